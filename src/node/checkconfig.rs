//! `rk3s check-config` (to be built).

pub fn main(_args: &[String]) -> i32 {
    eprintln!("rk3s check-config: not built yet");
    2
}
