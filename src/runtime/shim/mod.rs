//! The per-pod shim (to be built).

pub fn main(_args: &[String]) -> i32 {
    eprintln!("rk3s shim: not built yet");
    2
}
