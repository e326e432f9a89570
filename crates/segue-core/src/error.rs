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
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said (in the message, so not also a `source`).
        err: std::io::Error,
    },
    /// An input record (or a whole input file) is not what was expected.
    Input {
        /// The input file.
        file: PathBuf,
        /// Where in the file.
        position: Position,
        /// What was found and what was expected.
        message: String,
    },
    /// A configuration value or a combination of arguments is invalid.
    Config(String),
    /// A stored artifact is unreadable or inconsistent.
    Artifact {
        /// The artifact file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A rank outside `1..=items` (a rank is one plus the number of other items scoring at
    /// least as high as the target).
    InvalidRank {
        /// The prediction it belongs to, when known.
        prediction: Option<usize>,
        /// The rank given.
        rank: usize,
        /// The number of items ranked.
        items: usize,
    },
    /// A score that cannot be ranked.
    NanScore {
        /// The prediction (row) it belongs to, when known.
        prediction: Option<usize>,
        /// The item (column) whose score is NaN.
        item: usize,
    },
    /// A target item outside the scored items.
    TargetOutOfRange {
        /// The prediction it belongs to, when known.
        prediction: Option<usize>,
        /// The target item.
        target: usize,
        /// The number of items scored.
        items: usize,
    },
    /// Buffers whose sizes do not agree.
    ShapeMismatch {
        /// What was measured.
        what: String,
        /// The size expected.
        expected: usize,
        /// The size found.
        found: usize,
    },
    /// A table without a column a reader needs.
    MissingColumn {
        /// The column looked for.
        column: String,
        /// The columns the table has.
        found: Vec<String>,
    },
    /// A table column of another type than a reader needs.
    ColumnType {
        /// The column.
        column: String,
        /// The type needed.
        expected: String,
        /// The type found.
        found: String,
    },
    /// A null where a table column must have a value.
    NullValue {
        /// The column.
        column: String,
        /// The row (0-based).
        row: usize,
    },
    /// Training diverged: its loss became NaN or infinite (a smaller learning rate may help).
    Diverged {
        /// What was trained (`"the model"`, `"the VAE"`).
        what: String,
        /// The loss value.
        loss: f64,
        /// Where: 1-based epoch.
        epoch: usize,
        /// Where in the epoch: the 1-based step, when known.
        step: Option<usize>,
        /// The setting to lower (`"model.lr"`).
        lower: String,
    },
    /// A library segue builds on failed (candle, polars, serde_json, a linear-algebra routine,
    /// the tokenizer, a thread pool).
    Backend {
        /// The library.
        library: &'static str,
        /// What was being done, and what the library said.
        message: String,
    },
    /// There is nothing to fit or to evaluate: no training track has the data a stage needs,
    /// no session is long enough to make an example.
    NoData {
        /// What is missing, and what it means.
        what: String,
    },
    /// An index outside the rows or items it refers to.
    OutOfRange {
        /// What was indexed.
        what: String,
        /// The index given.
        index: usize,
        /// The number of rows or items there are.
        len: usize,
    },
    /// A value that must be finite is NaN or infinite.
    NonFinite {
        /// Where the value is.
        what: String,
        /// The value.
        value: f64,
    },
    /// Arguments that do not fit together (offsets that decrease, a length outside its range).
    InvalidArgument(String),
    /// A model or data file could not be found locally nor fetched.
    Unavailable {
        /// What was looked for.
        what: String,
        /// Where it was looked for and why each place failed.
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, err } => write!(f, "{}: {err}", path.display()),
            Error::Input { file, position, message } => {
                write!(f, "{}, {position}: {message}", file.display())
            }
            Error::Config(message) | Error::InvalidArgument(message) => f.write_str(message),
            Error::NullValue { column, row } => write!(f, "column `{column}` is null at row {row}"),
            Error::Backend { library, message } => write!(f, "{library}: {message}"),
            Error::NoData { what } => f.write_str(what),
            Error::OutOfRange { what, index, len } => {
                write!(f, "{what}: index {index} is outside the {len} there are")
            }
            Error::NonFinite { what, value } => write!(f, "{what} is {value}, not a finite number"),
            Error::Unavailable { what, message } => write!(f, "{what} is not available: {message}"),
            Error::Artifact { path, message } => {
                write!(f, "artifact {}: {message}", path.display())
            }
            Error::InvalidRank { prediction, rank, items } => write!(
                f,
                "{}rank {rank} is outside 1..={items}: a rank counts the target itself and every other item scoring at least as high",
                prediction_prefix(*prediction)
            ),
            Error::NanScore { prediction, item } => {
                write!(f, "{}the score of item {item} is NaN", prediction_prefix(*prediction))
            }
            Error::TargetOutOfRange { prediction, target, items } => write!(
                f,
                "{}target item {target} is outside the {items} scored items",
                prediction_prefix(*prediction)
            ),
            Error::ShapeMismatch { what, expected, found } => {
                write!(f, "{what}: expected {expected}, found {found}")
            }
            Error::MissingColumn { column, found } => {
                write!(f, "no column `{column}` (columns: {})", found.join(", "))
            }
            Error::ColumnType { column, expected, found } => {
                write!(f, "column `{column}` is {found}, expected {expected}")
            }
            Error::Diverged { what, loss, epoch, step, lower } => {
                let step = step.map_or(String::new(), |s| format!(", step {s}"));
                write!(
                    f,
                    "the training loss of {what} is {loss} at epoch {epoch}{step}: training stopped (try a smaller {lower})"
                )
            }
        }
    }
}

/// The operating system's error is part of the message (see [`Error::Io`]), so no error has a
/// separate `source`.
impl std::error::Error for Error {}

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

    /// An [`Error::Backend`] from `library`'s error `e` while doing `doing`.
    pub fn backend(library: &'static str, doing: &str, e: impl fmt::Display) -> Self {
        let message = if doing.is_empty() { e.to_string() } else { format!("{doing}: {e}") };
        Error::Backend { library, message }
    }

    /// An [`Error::NoData`].
    pub fn no_data(what: impl Into<String>) -> Self {
        Error::NoData { what: what.into() }
    }

    /// An [`Error::Artifact`] for `path`.
    pub fn artifact(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Artifact { path: path.into(), message: message.into() }
    }
}

/// `Result` with segue's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
