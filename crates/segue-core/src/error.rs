use std::fmt;
use std::path::PathBuf;

/// Where in an input file a problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// A 1-based line number of a text file.
    Line(u64),
    /// A 1-based record number (a JSON array element, a table row after the header).
    Record(u64),
    /// A line and column, as a JSON parser reports them.
    LineColumn(u64, u64),
    /// The file as a whole.
    File,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Record(n) => write!(f, "record {n}"),
            Position::LineColumn(l, c) => write!(f, "line {l}, column {c}"),
            Position::File => f.write_str("whole file"),
        }
    }
}

/// The error type of every segue crate. New variants may be added: match with a `_` arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {err}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said (in the message, so not also a `source`).
        err: std::io::Error,
    },
    /// An input record (or a whole input file) is not what was expected.
    #[error("{}, {position}: {message}", file.display())]
    Input {
        /// The input file.
        file: PathBuf,
        /// Where in the file.
        position: Position,
        /// What was found and what was expected.
        message: String,
    },
    /// A configuration value or a combination of arguments is invalid.
    #[error("{0}")]
    Config(String),
    /// A stored artifact is unreadable or inconsistent.
    #[error("artifact {}: {message}", path.display())]
    Artifact {
        /// The artifact file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A rank outside `1..=items` (a rank is one plus the number of other items scoring at
    /// least as high as the target).
    #[error("{}rank {rank} is outside 1..={items}: a rank counts the target itself and every other item scoring at least as high", prediction_prefix(*prediction))]
    InvalidRank {
        /// The prediction it belongs to, when known.
        prediction: Option<usize>,
        /// The rank given.
        rank: usize,
        /// The number of items ranked.
        items: usize,
    },
    /// A score that cannot be ranked.
    #[error("{}the score of item {item} is NaN", prediction_prefix(*prediction))]
    NanScore {
        /// The prediction (row) it belongs to, when known.
        prediction: Option<usize>,
        /// The item (column) whose score is NaN.
        item: usize,
    },
    /// A target item outside the scored items.
    #[error("{}target item {target} is outside the {items} scored items", prediction_prefix(*prediction))]
    TargetOutOfRange {
        /// The prediction it belongs to, when known.
        prediction: Option<usize>,
        /// The target item.
        target: usize,
        /// The number of items scored.
        items: usize,
    },
    /// Buffers whose sizes do not agree.
    #[error("{what}: expected {expected}, found {found}")]
    ShapeMismatch {
        /// What was measured.
        what: String,
        /// The size expected.
        expected: usize,
        /// The size found.
        found: usize,
    },
    /// Anything else, with context.
    #[error("{0}")]
    Other(String),
}

fn prediction_prefix(prediction: Option<usize>) -> String {
    prediction.map_or(String::new(), |p| format!("prediction {p}: "))
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), err: source }
    }

    /// An [`Error::Input`] for a record of `file`.
    pub fn input(file: impl Into<PathBuf>, position: Position, message: impl Into<String>) -> Self {
        Error::Input { file: file.into(), position, message: message.into() }
    }

    /// An [`Error::Artifact`] for `path`.
    pub fn artifact(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Artifact { path: path.into(), message: message.into() }
    }
}

/// `Result` with segue's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
