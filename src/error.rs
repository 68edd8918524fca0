//! Errors the user can fix: bad data, bad configuration, bad arguments.
//!
//! Anything that is the user's input to correct is an [`InputError`]; the binary exits with
//! code 2 for those and 1 for everything else (I/O failures, bugs, unreachable services).

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem in something the user gave us, located as precisely as we can, with what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub file: Option<PathBuf>,
    /// 1-based line in `file`.
    pub line: Option<u64>,
    pub column: Option<String>,
    pub problem: String,
    pub hint: Option<String>,
}

impl InputError {
    pub fn new(problem: impl Into<String>) -> Self {
        InputError { file: None, line: None, column: None, problem: problem.into(), hint: None }
    }

    /// A problem in `file` as a whole.
    pub fn in_file(file: &Path, problem: impl Into<String>) -> Self {
        InputError { file: Some(file.to_path_buf()), ..InputError::new(problem) }
    }

    pub fn line(mut self, line: u64) -> Self {
        self.line = Some(line);
        self
    }

    pub fn column(mut self, column: impl Into<String>) -> Self {
        self.column = Some(column.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut located = false;
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            located = true;
        }
        if let Some(line) = self.line {
            write!(f, "{}line {line}", if located { ", " } else { "" })?;
            located = true;
        }
        if let Some(column) = &self.column {
            write!(f, "{}column `{column}`", if located { ", " } else { "" })?;
            located = true;
        }
        write!(f, "{}{}", if located { ": " } else { "" }, self.problem)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InputError {}

/// The process exit code for an error chain: 2 when the user's input is at fault.
pub fn exit_code(error: &anyhow::Error) -> i32 {
    if error.chain().any(|cause| cause.is::<InputError>()) {
        2
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_every_known_location_part() {
        let error = InputError::in_file(Path::new("a.csv"), "value `x` is not an integer")
            .line(7)
            .column("URL_Length")
            .hint("use one of -1, 0, 1");
        assert_eq!(
            error.to_string(),
            "a.csv, line 7, column `URL_Length`: value `x` is not an integer\n  hint: use one of -1, 0, 1"
        );
        assert_eq!(InputError::new("no source").to_string(), "no source");
    }

    #[test]
    fn input_errors_exit_with_two() {
        let error = anyhow::Error::new(InputError::new("bad")).context("reading");
        assert_eq!(exit_code(&error), 2);
        assert_eq!(exit_code(&anyhow::anyhow!("disk full")), 1);
    }
}
