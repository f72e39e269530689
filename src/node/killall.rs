//! `rk3s killall` (to be built).

pub fn main(_args: &[String]) -> i32 {
    eprintln!("rk3s killall: not built yet");
    2
}
