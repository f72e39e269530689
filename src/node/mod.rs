//! Node agents. `simulated` runs fake nodes in process (in the style of
//! kwok) for tests and scale benchmarks; the real agent (pod workers,
//! probes, volumes, status, lease) comes later and must not borrow its
//! shortcuts.

pub mod agent;
pub mod checkconfig;
pub mod hooks;
pub mod killall;
pub mod logs;
pub mod metrics;
pub mod probes;
pub mod simulated;
pub mod volumes;
