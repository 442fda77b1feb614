//! How deeply a custom policy file nests, measured on its text before Cedar sees it.
//!
//! Cedar turns its parse tree into expressions, prints, validates and drops them by recursion,
//! with no limit of its own: a file of a few thousand `(`, nested `if`s or a long enough chain of
//! `.a.a.a` overflowed the stack and aborted the broker at start or on reload (SIGHUP). So a file
//! is scanned first, and refused, at the line and column where it goes too deep, when either
//!
//! - brackets (`(`, `[`, `{`) and `if`s nest more than [`MAX_NESTING`] deep (each level costs
//!   Cedar a dozen stack frames), or
//! - an expression's operators could nest more than [`MAX_DEPTH`] deep: within one bracket (up to
//!   a `,`), each operator (`.`, `&&`, `==`, `in`, `has`, …) can put everything before it one
//!   level further down, and a bracket is as deep as its deepest element.
//!
//! Both bounds are far beyond what a person writes (a condition nested eight deep is already hard
//! to read), and both are upper bounds on the expression's real depth, so nothing that passes can
//! be too deep for the stack the load runs on (see `Policies::build`) or for the threads that
//! later evaluate and drop the policies.

use super::PolicyError;
use super::load::{CustomFile, at};

/// Brackets and `if`s nested inside each other.
pub(super) const MAX_NESTING: u32 = 64;
/// Operators an expression may nest, counted as described in the module docs.
pub(super) const MAX_DEPTH: u32 = 1000;

/// One open bracket (or the top level of the file), and the element of it being read: the part
/// since the bracket opened or since its last `,` or `;`.
#[derive(Default)]
struct Level {
    /// Operators so far in the current element.
    ops: u32,
    /// `if`s so far in the current element.
    ifs: u32,
    /// The deepest bracket closed so far in the current element.
    child: u32,
    /// The deepest element of this bracket already finished.
    done: u32,
}

impl Level {
    /// How deep the current element is at least, from what has been read of it.
    fn current(&self) -> u32 {
        self.ops.saturating_add(self.child)
    }
}

/// Refuses a file that nests deeper than [`MAX_NESTING`] or [`MAX_DEPTH`]. The scan knows
/// comments and string literals and nothing else of Cedar's grammar; unbalanced brackets are left
/// for Cedar to report.
pub(super) fn check(file: &CustomFile) -> Result<(), PolicyError> {
    let text = file.text.as_bytes();
    let too_deep = |offset: usize| {
        at(
            file,
            offset,
            format!(
                "brackets and `if` nest more than {MAX_NESTING} deep here, which could exhaust the stack; flatten the expression or split the policy into several"
            ),
        )
    };
    let too_long = |offset: usize| {
        at(
            file,
            offset,
            format!(
                "this expression nests more than {MAX_DEPTH} operators deep, which could exhaust the stack; split the policy into several, or compare with `in [...]` instead of a chain of `||`"
            ),
        )
    };
    let mut levels: Vec<Level> = vec![Level::default()];
    // Open brackets plus the `if`s of the current element of each of them.
    let mut nesting: u32 = 0;
    // Whether the previous byte was an operator character, so `&&` or `==` counts once.
    let mut in_operator = false;
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        let start = i;
        i += 1;
        let operator = matches!(
            b,
            b'.' | b'|' | b'&' | b'=' | b'!' | b'<' | b'>' | b'+' | b'-' | b'*' | b'/' | b'%'
        );
        match b {
            b'/' if text.get(i) == Some(&b'/') => {
                // A comment, to the end of the line.
                i = text
                    .get(i..)
                    .and_then(|rest| rest.iter().position(|&c| c == b'\n'))
                    .map_or(text.len(), |n| i + n);
                in_operator = false;
                continue;
            }
            b'"' => {
                // A string, which may hold escaped quotes.
                while let Some(&c) = text.get(i) {
                    i += if c == b'\\' { 2 } else { 1 };
                    if c == b'"' {
                        break;
                    }
                }
            }
            b'(' | b'[' | b'{' => {
                nesting = nesting.saturating_add(1);
                if nesting > MAX_NESTING {
                    return Err(too_deep(start));
                }
                levels.push(Level::default());
            }
            b')' | b']' | b'}' if levels.len() > 1 => {
                let closed = levels.pop().unwrap_or_default();
                nesting = nesting.saturating_sub(closed.ifs.saturating_add(1));
                let depth = closed.done.max(closed.current());
                if let Some(parent) = levels.last_mut() {
                    parent.child = parent.child.max(depth);
                    if parent.current() > MAX_DEPTH {
                        return Err(too_long(start));
                    }
                }
            }
            b',' | b';' => {
                if let Some(level) = levels.last_mut() {
                    level.done = level.done.max(level.current());
                    nesting = nesting.saturating_sub(level.ifs);
                    *level = Level {
                        done: level.done,
                        ..Level::default()
                    };
                }
            }
            b if b.is_ascii_alphabetic() || b == b'_' => {
                while text
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                {
                    i += 1;
                }
                let word = text.get(start..i).unwrap_or_default();
                let is_if = word == b"if";
                if (is_if || matches!(word, b"in" | b"has" | b"like" | b"is"))
                    && let Some(level) = levels.last_mut()
                {
                    level.ops = level.ops.saturating_add(1);
                    if level.current() > MAX_DEPTH {
                        return Err(too_long(start));
                    }
                    if is_if {
                        level.ifs = level.ifs.saturating_add(1);
                        nesting = nesting.saturating_add(1);
                        if nesting > MAX_NESTING {
                            return Err(too_deep(start));
                        }
                    }
                }
            }
            _ if operator && !in_operator => {
                if let Some(level) = levels.last_mut() {
                    level.ops = level.ops.saturating_add(1);
                    if level.current() > MAX_DEPTH {
                        return Err(too_long(start));
                    }
                }
            }
            _ => {}
        }
        in_operator = operator;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> CustomFile {
        CustomFile::new("policies", "x.cedar".into(), "x.cedar".into(), text.into()).unwrap()
    }

    fn err(text: &str) -> PolicyError {
        check(&file(text)).unwrap_err()
    }

    const HEAD: &str = "permit(principal, action, resource) when { ";

    #[test]
    fn ordinary_policies_pass() {
        for text in [
            "permit(principal, action, resource);",
            "// ((((((((\npermit(principal, action, resource) when { \"((((\\\"((\" == \"x\" };",
            "@id(\"x\")\nforbid(principal in Breakglass::Group::\"a\", action in [Breakglass::Action::\"read\"], resource)\n\
             when { if context.own then principal.kind == \"human\" else (principal has x && !(1 + 2 > -3)) }\n\
             unless { [1, [2, [3]]].contains(1) && {a: {b: 1}}.a.b == 1 };",
        ] {
            check(&file(text)).unwrap();
        }
    }

    #[test]
    fn brackets_and_ifs_nested_past_the_limit_are_refused_where_they_go_too_deep() {
        let n = MAX_NESTING as usize;
        let ok = format!("{HEAD}{}true{} }};", "(".repeat(n - 1), ")".repeat(n - 1));
        check(&file(&ok)).unwrap();
        let e = err(&format!(
            "\n{HEAD}{}true{} }};",
            "(".repeat(n),
            ")".repeat(n)
        ));
        assert_eq!(
            (e.line, e.column),
            (Some(2), Some(HEAD.len() as u32 + n as u32))
        );
        assert!(
            e.reason
                .starts_with("brackets and `if` nest more than 64 deep here")
        );
        let e = err(&format!(
            "{HEAD}{}true{} }};",
            "if true then ".repeat(n),
            " else false".repeat(n)
        ));
        assert!(e.reason.starts_with("brackets and `if`"), "{e}");
        // Separate elements do not add up.
        let wide = format!(
            "{HEAD}[{}] == [] }};",
            vec!["if true then 1 else 2"; 2 * n].join(", ")
        );
        check(&file(&wide)).unwrap();
    }

    #[test]
    fn long_chains_of_operators_are_refused() {
        let n = MAX_DEPTH as usize;
        // `context.own` is one operator.
        check(&file(&format!(
            "{HEAD}context.own{} }};",
            ".x".repeat(n - 1)
        )))
        .unwrap();
        let e = err(&format!("{HEAD}context.own{} }};", ".x".repeat(n)));
        assert!(
            e.reason
                .starts_with("this expression nests more than 1000 operators deep"),
            "{e}"
        );
        // A chain after a nested bracket counts that bracket's depth too.
        let inner = format!("({}true)", "true && ".repeat(n / 2));
        let e = err(&format!(
            "{HEAD}({inner}{}) }};",
            " || true".repeat(n / 2 + 1)
        ));
        assert!(e.reason.contains("operators deep"), "{e}");
        // `&&` is one operator, however many characters.
        check(&file(&format!("{HEAD}{}true }};", "true && ".repeat(n)))).unwrap();
        let e = err(&format!("{HEAD}{}true }};", "true && ".repeat(n + 1)));
        assert_eq!(e.column, Some(HEAD.len() as u32 + 8 * n as u32 + 6), "{e}");
    }
}
