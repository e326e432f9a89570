//! The events between ingest and sessionize, 16 bytes a play: what both stages hold in memory,
//! where a frame would hold a string view per play beside the time and the track key.

use std::path::Path;

use polars::prelude::*;
use segue_core::{Error, Result};

use crate::ingest::pl_err;
use crate::parquet;

/// Flips the sign bit, so that times compare as unsigned integers in their signed order.
const SIGN: u64 = 1 << 63;

/// Listening events sorted by (user, time, input order), as ingest keeps them and sessionize
/// reads them. Each event is one `u128`: the user's code (32 bits), the time (64) and the track
/// key (32). Sorting the packed values sorts by (user code, time, key).
///
/// Written as Parquet with the columns `user` (str), `ts` (i64, UTC seconds of the play's
/// start) and `track_key` (u32), a row group at a time ([`Events::write`], [`Events::read`]).
#[derive(Clone, Default)]
pub struct Events {
    rows: Vec<u128>,
    /// The user ids, by code.
    users: Vec<Box<str>>,
}

/// The counts, not the rows (there can be billions).
impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("events", &self.rows.len())
            .field("users", &self.users.len())
            .finish()
    }
}

/// One event packed: the user's code, the time and the low 32 bits (a track key, or while
/// ingest sorts, the event's input index).
pub(crate) fn pack(user: u32, ts: i64, low: u32) -> u128 {
    u128::from(user) << 96 | u128::from(ts as u64 ^ SIGN) << 32 | u128::from(low)
}

/// The user code of a packed event.
pub(crate) fn user_of(row: u128) -> u32 {
    (row >> 96) as u32
}

/// The time of a packed event.
pub(crate) fn ts_of(row: u128) -> i64 {
    ((row >> 32) as u64 ^ SIGN) as i64
}

/// The low 32 bits of a packed event.
pub(crate) fn low_of(row: u128) -> u32 {
    row as u32
}

impl Events {
    /// Events from packed rows (already in order) and the user ids their codes index.
    pub(crate) fn from_packed(rows: Vec<u128>, users: Vec<Box<str>>) -> Events {
        Events { rows, users }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The user code of event `i` (an index into [`Events::user_names`]).
    pub fn user(&self, i: usize) -> u32 {
        user_of(self.rows[i])
    }

    /// The user id of event `i`.
    pub fn user_name(&self, i: usize) -> &str {
        &self.users[self.user(i) as usize]
    }

    /// The user ids, by code.
    pub fn user_names(&self) -> &[Box<str>] {
        &self.users
    }

    /// The time of event `i` (UTC seconds).
    pub fn ts(&self, i: usize) -> i64 {
        ts_of(self.rows[i])
    }

    /// The track key of event `i` (a row of ingest's keys table).
    pub fn key(&self, i: usize) -> u32 {
        low_of(self.rows[i])
    }

    /// Events from a frame with the columns `user` (str), `ts` (i64) and `track_key` (u32).
    /// Users get a code per run of equal ids, in order (sessionize checks that runs are sorted).
    pub fn from_frame(df: &DataFrame) -> Result<Events> {
        let mut events = Events::default();
        events.append(df)?;
        Ok(events)
    }

    /// Appends the rows of a frame with the columns of [`Events::from_frame`], chunk by chunk
    /// (a frame read in row groups is several: joining them would copy the columns again).
    fn append(&mut self, df: &DataFrame) -> Result<()> {
        let users = df.column("user").and_then(|c| c.str()).map_err(pl_err)?;
        let ts = parquet::i64_column(df, "ts")?;
        let key = parquet::u32_column(df, "track_key")?;
        self.rows.reserve(ts.len());
        for (i, user) in users.iter().enumerate() {
            let user = user.ok_or(Error::NullValue { column: "user".into(), row: i })?;
            if self.users.last().map(|u| &**u) != Some(user) {
                self.users.push(user.into());
            }
            self.rows.push(pack(self.users.len() as u32 - 1, ts[i], key[i]));
        }
        Ok(())
    }

    /// Reads events written by [`Events::write`] (or any Parquet file with its columns), a row
    /// group at a time: memory holds the packed events and one group's columns.
    pub fn read(path: &Path) -> Result<Events> {
        let mut events = Events::default();
        for batch in parquet::read_batches(path, &["user", "ts", "track_key"])? {
            events.append(&batch?).map_err(|e| Error::artifact(path, e.to_string()))?;
        }
        Ok(events)
    }

    /// The events `range` as a frame with the columns of [`Events::from_frame`].
    fn frame_of(&self, range: std::ops::Range<usize>) -> Result<DataFrame> {
        let rows = &self.rows[range];
        let names = rows.iter().map(|&r| &*self.users[user_of(r) as usize]);
        DataFrame::new_infer_height(vec![
            Column::new("user".into(), StringChunked::from_iter_values("user".into(), names)),
            Column::new("ts".into(), rows.iter().map(|&r| ts_of(r)).collect::<Vec<_>>()),
            Column::new("track_key".into(), rows.iter().map(|&r| low_of(r)).collect::<Vec<_>>()),
        ])
        .map_err(pl_err)
    }

    /// All events as a frame with the columns of [`Events::from_frame`] (for tables small
    /// enough to hold whole; [`Events::write`] writes any size).
    pub fn frame(&self) -> Result<DataFrame> {
        self.frame_of(0..self.len())
    }

    /// Writes the events as Parquet, a row group at a time, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut out = parquet::BatchWriter::new(path, self.frame_of(0..0)?.schema())?;
        for start in (0..self.len()).step_by(parquet::ROW_GROUP) {
            out.write(&mut self.frame_of(start..self.len().min(start + parquet::ROW_GROUP))?)?;
        }
        out.finish()
    }

    /// Keeps the events whose track key `keep` says (`keep[key]`), in place; an error names
    /// a key past the end of `keep`. User codes stay (a user left without events leaves a code
    /// unused).
    pub fn retain_keys(&mut self, keep: &[bool]) -> Result<()> {
        if let Some(i) = (0..self.len()).find(|&i| self.key(i) as usize >= keep.len()) {
            return Err(Error::OutOfRange {
                what: "the keys table (track_key)".into(),
                index: self.key(i) as usize,
                len: keep.len(),
            });
        }
        self.rows.retain(|&r| keep[low_of(r) as usize]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_events_keep_their_fields_and_sort_by_user_then_time() {
        let rows =
            [pack(1, -5, 7), pack(0, i64::MAX, 0), pack(1, i64::MIN, u32::MAX), pack(0, 3, 2)];
        let mut sorted = rows.to_vec();
        sorted.sort_unstable();
        let fields: Vec<(u32, i64, u32)> =
            sorted.iter().map(|&r| (user_of(r), ts_of(r), low_of(r))).collect();
        assert_eq!(fields, [(0, 3, 2), (0, i64::MAX, 0), (1, i64::MIN, u32::MAX), (1, -5, 7)]);
    }

    #[test]
    fn events_round_trip_through_parquet_in_row_groups() {
        let n = parquet::ROW_GROUP + 1000;
        let users: Vec<Box<str>> = ["ann", "bob", "cy"].map(Box::from).into();
        let rows: Vec<u128> =
            (0..n).map(|i| pack((3 * i / n) as u32, i as i64 - 50, (i % 977) as u32)).collect();
        let events = Events::from_packed(rows, users);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.parquet");
        events.write(&path).unwrap();
        let back = Events::read(&path).unwrap();
        assert_eq!(back.rows, events.rows);
        assert_eq!(back.users, events.users);
        assert_eq!(parquet::read(&path).unwrap(), events.frame().unwrap());
        // Whole row groups: the writer's groups are ROW_GROUP rows, then the rest.
        let groups = ParquetReader::new(std::fs::File::open(&path).unwrap())
            .get_metadata()
            .unwrap()
            .row_groups
            .iter()
            .map(|g| g.num_rows())
            .collect::<Vec<_>>();
        assert_eq!(groups, [parquet::ROW_GROUP, 1000]);
        assert!(
            !dir.path()
                .read_dir()
                .unwrap()
                .any(|e| { e.unwrap().file_name().to_string_lossy().ends_with(".tmp") })
        );
    }
}
