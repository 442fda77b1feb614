//! Background workers, one per file, each owning its loop and its logic. Each loops until
//! shutdown, doing its pass on an interval (or on a signal); a failed pass is logged and retried
//! on the next tick, never fatal. The passes are public so tests can drive them with a manual
//! clock instead of waiting for a tick.

pub mod alerts;
pub mod checkpoint;
pub mod reaper;
pub mod reconciler;
pub mod roles;
pub mod throttle;
