//! Everything a broker needs before it serves: its configuration ([`config`]), where its state
//! lives and first-time initialisation ([`datadir`]), the key that seals secrets at rest
//! ([`sealing`]), the role files ([`roles`]), HTTPS ([`tls`]), serving connections within their
//! limits (`listen`), and the errors that stop a start ([`StartupError`]).

pub mod config;
pub mod datadir;
mod error;
pub(crate) mod listen;
pub mod roles;
pub mod sealing;
pub mod tls;

pub use error::StartupError;
