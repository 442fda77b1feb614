//! Reading the operator's `*.cedar` files and turning Cedar's parse and validation errors into
//! [`PolicyError`]s that name a file, a line and a column.

use std::ffi::OsStr;
use std::io::Read as _;
use std::path::Path;
use std::str::FromStr as _;

use cedar_policy::ffi::DetailedError;
use cedar_policy::{Policy, PolicyId, PolicySet};
use sha2::{Digest as _, Sha256};

use super::PolicyError;

/// The largest policy file read; anything bigger is refused rather than truncated.
pub(super) const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// One custom policy file, read whole.
pub(super) struct CustomFile {
    /// The file name, e.g. `x.cedar`.
    pub(super) name: String,
    /// The path as given, for errors.
    pub(super) path: String,
    /// The directory's last component and the file name, e.g. `policies/x.cedar`, for reasons.
    pub(super) label: String,
    pub(super) text: String,
    /// SHA-256 of the bytes, hex.
    pub(super) sha256: String,
}

/// One policy of a custom file, with its final id and where it starts in the file.
pub(super) struct Parsed {
    pub(super) policy: Policy,
    pub(super) offset: usize,
}

impl CustomFile {
    /// A file named `name` in a directory whose last component is `dir_label`, from its bytes,
    /// which must be UTF-8. `path` names it in errors.
    pub(super) fn new(
        dir_label: &str,
        name: String,
        path: String,
        bytes: Vec<u8>,
    ) -> Result<Self, PolicyError> {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = e.utf8_error().valid_up_to();
            let (line, column) = line_col(&String::from_utf8_lossy(e.as_bytes()), valid);
            PolicyError {
                file: path.clone(),
                line: Some(line),
                column: Some(column),
                reason: "the file is not valid UTF-8; save it as UTF-8".into(),
            }
        })?;
        let label = if dir_label.is_empty() {
            name.clone()
        } else {
            format!("{dir_label}/{name}")
        };
        Ok(Self {
            name,
            path,
            label,
            text,
            sha256,
        })
    }
}

/// Every `*.cedar` file in `dir`, sorted by name. A missing directory holds no files; anything
/// else that cannot be read is an error. Names starting with `.` (editor lock and swap files) are
/// skipped, as is anything not ending in `.cedar` and anything that is not a file.
pub(super) fn read_dir(dir: &Path) -> Result<Vec<CustomFile>, PolicyError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir, "cannot read the policies directory", &e)),
    };
    let dir_label = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, "cannot list the policies directory", &e))?;
        let path = entry.path();
        let file_name = entry.file_name();
        if path.extension() != Some(OsStr::new("cedar"))
            || file_name.as_encoded_bytes().starts_with(b".")
        {
            continue;
        }
        let Some(name) = file_name.to_str().map(str::to_owned) else {
            return Err(PolicyError {
                file: path.display().to_string(),
                line: None,
                column: None,
                reason: "the file name is not valid UTF-8; rename the file".into(),
            });
        };
        let meta = std::fs::metadata(&path).map_err(|e| io_error(&path, "cannot read", &e))?;
        if !meta.is_file() {
            continue;
        }
        let bytes = read_capped(&path)?;
        files.push(CustomFile::new(
            &dir_label,
            name,
            path.display().to_string(),
            bytes,
        )?);
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Parses one custom file. Each policy keeps its `@id` if it has one and is otherwise named
/// `file.cedar#N` (N counting from 0 in the file), so ids never collide across files.
pub(super) fn parse(file: &CustomFile) -> Result<Vec<Parsed>, PolicyError> {
    super::nesting::check(file)?;
    let set = PolicySet::from_str(&file.text).map_err(|errors| {
        let first = errors.iter().next().map(DetailedError::from);
        match first {
            Some(d) => file_error(file, &d, 0),
            None => at(file, 0, "the file does not parse".into()),
        }
    })?;
    // Cedar numbers the statements of a text `policy0`, `policy1`, … in order, templates and
    // static policies alike.
    let statements = set.num_of_policies() + set.num_of_templates();
    let mut cursor = 0;
    let mut out = Vec::with_capacity(set.num_of_policies());
    for n in 0..statements {
        let cedar_id = PolicyId::new(format!("policy{n}"));
        if let Some(template) = set.template(&cedar_id) {
            let offset = locate(&file.text, &template.to_cedar(), cursor);
            return Err(at(
                file,
                offset,
                "templates (policies with `?principal` or `?resource`) are not supported; name the principal or resource".into(),
            ));
        }
        let Some(policy) = set.policy(&cedar_id) else {
            continue;
        };
        let offset = policy
            .to_cedar()
            .map_or(cursor, |t| locate(&file.text, &t, cursor));
        cursor = offset;
        let id = match policy.annotation("id") {
            Some(id) => id.to_owned(),
            None => format!("{}#{n}", file.name),
        };
        out.push(Parsed {
            policy: policy.new_id(PolicyId::new(id)),
            offset,
        });
    }
    Ok(out)
}

/// Where `needle` (a policy's own text, cut from `text` by the parser) starts, searching from
/// `from` on so that two identical policies get their own positions.
fn locate(text: &str, needle: &str, from: usize) -> usize {
    text.get(from..)
        .and_then(|rest| rest.find(needle))
        .map_or(from, |i| from + i)
}

/// An error in a custom file at the first source location Cedar gives, or at `fallback` (the
/// start of the offending policy) when it gives none.
pub(super) fn file_error(file: &CustomFile, d: &DetailedError, fallback: usize) -> PolicyError {
    let offset = d
        .source_locations
        .iter()
        .map(|l| l.loc.start)
        .min()
        .unwrap_or(fallback);
    at(file, offset, sentence(d))
}

pub(super) fn at(file: &CustomFile, offset: usize, reason: String) -> PolicyError {
    let (line, column) = line_col(&file.text, offset);
    PolicyError {
        file: file.path.clone(),
        line: Some(line),
        column: Some(column),
        reason,
    }
}

/// Cedar's message and its help, on one line.
pub(super) fn sentence(d: &DetailedError) -> String {
    let text = match &d.help {
        Some(help) => format!("{}; {help}", d.message),
        None => d.message.clone(),
    };
    one_line(&text)
}

pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(super) fn line_col(text: &str, offset: usize) -> (u32, u32) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = text.get(..end).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    )
}

/// Reads at most [`MAX_FILE_BYTES`], and fails rather than truncate a larger file.
fn read_capped(path: &Path) -> Result<Vec<u8>, PolicyError> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, "cannot read", &e))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, "cannot read", &e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(PolicyError {
            file: path.display().to_string(),
            line: None,
            column: None,
            reason: format!(
                "the file is larger than {} KiB; split it into smaller files",
                MAX_FILE_BYTES / 1024
            ),
        });
    }
    Ok(bytes)
}

fn io_error(path: &Path, what: &str, e: &std::io::Error) -> PolicyError {
    PolicyError {
        file: path.display().to_string(),
        line: None,
        column: None,
        reason: format!("{what}: {}", e.to_string().to_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn offsets_map_to_one_based_lines_and_character_columns() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 2), (1, 3));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 7), (2, 4));
        assert_eq!(line_col(text, 8), (3, 1));
        assert_eq!(line_col(text, 100), (3, 2));
    }
}
