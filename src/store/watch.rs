//! In-process watch fan-out with a bounded window of recent events.
