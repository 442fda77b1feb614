//! One module per subcommand.

pub(crate) mod approve;
pub(crate) mod audit;
pub(crate) mod cancel;
pub(crate) mod credential;
pub(crate) mod deny;
pub(crate) mod drills;
pub(crate) mod extend;
pub(crate) mod grants;
pub(crate) mod init;
pub(crate) mod lockdown;
pub(crate) mod policy;
pub(crate) mod recover_admin;
pub(crate) mod request;
pub(crate) mod reviews;
pub(crate) mod revoke;
pub(crate) mod roles;
pub(crate) mod serve;
pub(crate) mod signin;
pub(crate) mod tokens;
pub(crate) mod users;
pub(crate) mod whoami;
