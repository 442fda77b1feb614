//! Background workers, one per file, each owning its loop and its logic. Each loops until
//! shutdown: the reaper and the alert dispatcher sleep until their next due item or until a
//! service wakes them with earlier work ([`wake`]); the reconciler and the checkpointer pass on
//! their interval; the roles worker on SIGHUP. A failed pass is logged and retried shortly, never
//! fatal. The passes are public so tests can drive them with a manual clock instead of waiting.

pub mod alerts;
pub mod attestations;
pub mod checkpoint;
pub mod drills;
pub mod reaper;
pub mod reconciler;
pub mod reviews;
pub mod roles;
pub mod throttle;
pub mod wake;
