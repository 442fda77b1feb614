//! The session `breakglass login` keeps: `$BREAKGLASS_CONFIG_DIR/session.json`, else
//! `$XDG_CONFIG_HOME/breakglass/session.json`, else `~/.config/breakglass/session.json`; the
//! directory 0700 and the file 0600, written whole (a temporary file renamed into place).

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::client::CliError;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Saved {
    pub(crate) url: String,
    pub(crate) user: String,
    pub(crate) token: String,
    pub(crate) token_id: String,
    pub(crate) expires_at: String,
}

pub(crate) fn dir() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = nonempty("BREAKGLASS_CONFIG_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = nonempty("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(d).join("breakglass"));
    }
    nonempty("HOME").map(|h| PathBuf::from(h).join(".config").join("breakglass"))
}

pub(crate) fn path() -> Option<PathBuf> {
    dir().map(|d| d.join("session.json"))
}

/// The saved session, if there is one for `url`.
pub(crate) fn load(url: &str) -> Option<Saved> {
    let text = std::fs::read_to_string(path()?).ok()?;
    let s: Saved = serde_json::from_str(&text).ok()?;
    (s.url.trim_end_matches('/') == url.trim_end_matches('/')).then_some(s)
}

pub(crate) fn save(s: &Saved) -> Result<PathBuf, CliError> {
    let fail = |what: &str, e: std::io::Error| {
        CliError::local(format!("cannot save the session ({what}): {e}"))
    };
    let dir = dir().ok_or_else(|| {
        CliError::local(
            "cannot save the session: set HOME or BREAKGLASS_CONFIG_DIR (or use the token printed with --output json)"
                .into(),
        )
    })?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| fail("creating its directory", e))?;
    let path = dir.join("session.json");
    let tmp = dir.join(".session.json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail("writing it", e))?;
    let body = serde_json::to_vec_pretty(s).map_err(|e| CliError::local(e.to_string()))?;
    f.write_all(&body).map_err(|e| fail("writing it", e))?;
    f.sync_all().map_err(|e| fail("writing it", e))?;
    std::fs::rename(&tmp, &path).map_err(|e| fail("writing it", e))?;
    Ok(path)
}

pub(crate) fn remove() {
    if let Some(p) = path() {
        let _ = std::fs::remove_file(p);
    }
}
