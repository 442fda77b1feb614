//! Background workers, one per file. Each loops until shutdown, doing its pass on an interval;
//! a failed pass is logged and retried on the next tick, never fatal.

pub mod alerts;
pub mod checkpoint;
pub mod reaper;
pub mod reconciler;
pub mod roles;
