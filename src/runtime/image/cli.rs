//! `rk3s image import|ls|rm`.

pub fn main(_args: &[String]) -> i32 {
    eprintln!("rk3s image: not built yet");
    2
}
