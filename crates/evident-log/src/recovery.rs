//! Recovery: replay the journal from a start position, telling a torn tail (bytes that never
//! became durable, cut off by a crash) from corruption of acknowledged data (which must stop
//! the store). `docs/log-format.md` walks through the cases.
//!
//! The rule. Scanning forward, the first position `X` where no valid frame starts is the "bad
//! point". Everything before `X` was replayed. `X` is a torn tail, and is truncated, only if
//! nothing says the bytes at `X` were ever acknowledged:
//! - `X` is not before the checkpoint position (the checkpoint is written only over durable,
//!   verified bytes, and at every clean close over the whole journal), and
//! - no valid frame further on carries a `durable_before` past `X` (every frame records how far
//!   the journal was durable when it was written, so a valid frame after a hole proves the hole
//!   was once durable).
//!
//! Otherwise the store refuses to open with the file, offset and reason.
//!
//! Every cut is logged at `warn` with the file, the bytes and positions cut and how many intact
//! frames went with them, and kept in [`ReplayOutcome::truncation`] (shown by `/health`): a torn
//! tail is usually the unsynced end of a crash, but media damage in the last acknowledged round
//! looks the same (`docs/log-format.md`, media assumptions), so an operator must be able to see
//! every cut. A rebuilt index checkpoint is logged at `warn` too ([`warn_checkpoint`]).

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::frame::{self, FrameError, FrameHeader};
use crate::journal::{check_segment_header, Journal, SEGMENT_HEADER_LEN};

/// Bytes read from a segment at a time while replaying.
const CHUNK: usize = 16 << 20;

/// What replay found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// Journal position after the last valid frame.
    pub end_pos: u64,
    /// Frames replayed.
    pub frames: u64,
    /// Bytes replayed.
    pub bytes: u64,
    /// Position and checksum of the last valid frame.
    pub last_frame: Option<(u64, u32)>,
    /// Bytes of torn tail truncated (0 if the journal ended cleanly).
    pub truncated_bytes: u64,
    /// Where the torn tail started, if there was one.
    pub truncated_at: Option<u64>,
    /// The torn tail cut, in full, if there was one.
    pub truncation: Option<Truncation>,
}

/// A torn tail recovery cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// The segment file in which the cut starts.
    pub file: PathBuf,
    /// Byte within that file where the cut starts (0 when the whole file went).
    pub from_byte: u64,
    /// That file's length before the cut: bytes `from_byte..to_byte` of it were cut.
    pub to_byte: u64,
    /// Journal position where the cut starts (the first position with no valid frame).
    pub journal_position: u64,
    /// Bytes cut in all, later segment files included (pre-allocated zeros past the written
    /// data count too).
    pub bytes: u64,
    /// Later segment files removed whole (and the file itself, when `from_byte` is 0).
    pub segments_removed: Vec<PathBuf>,
    /// Intact frames found after the bad point and cut with it (frames whose checksum held but
    /// that follow the hole, so nothing proved them durable); the frame at the bad point is not
    /// counted.
    pub intact_frames_cut: u64,
    /// The bytes those intact frames took: written data that went with the cut.
    pub intact_bytes_cut: u64,
    /// Why no valid frame starts at the bad point.
    pub why: String,
}

enum Stop {
    /// The journal ends cleanly here.
    End(u64),
    /// No valid frame at this position: `what` says why.
    Bad(u64, String),
}

/// Replays frames from `start` (a frame boundary, or the journal's beginning when `start` is
/// 0), calling `apply` for each, then handles the tail as described in the module docs.
/// `durable` is the position known durable (the checkpoint's), or 0.
pub(crate) fn replay(
    journal: &mut Journal,
    start: u64,
    durable: u64,
    mut apply: impl FnMut(u64, &FrameHeader, &[u8]) -> Result<()>,
) -> Result<ReplayOutcome> {
    let mut outcome = ReplayOutcome { end_pos: start.max(SEGMENT_HEADER_LEN), ..ReplayOutcome::default() };
    if journal.segments.is_empty() {
        if start > SEGMENT_HEADER_LEN || durable > 0 {
            return Err(Error::Corrupted {
                file: journal.dir().to_path_buf(),
                offset: 0,
                what: "the journal has no segment but the checkpoint covers data".into(),
            });
        }
        return Ok(outcome);
    }
    let first = journal.segments.partition_point(|s| s.base <= start).saturating_sub(1);
    // Sealed segments before the start are not re-read (that is what the checkpoint is for),
    // but their sizes must still tile the journal.
    for pair in journal.segments.windows(2).take(first) {
        // Their headers are cheap to check, and damage found now is better than damage found
        // by the next full rebuild.
        let mut head = [0u8; SEGMENT_HEADER_LEN as usize];
        let header_ok = pair[0].file.read_exact_at(&mut head, 0).map_err(|e| e.to_string());
        if let Err(what) = header_ok.and_then(|()| check_segment_header(&head, pair[0].base)) {
            return Err(Error::Corrupted { file: pair[0].path.clone(), offset: 0, what });
        }
        // A sealed segment may be longer than its data (zeros pre-allocated before the roll,
        // never read); shorter means acknowledged bytes are gone.
        let len = pair[0].file.len()?;
        if pair[0].base + len < pair[1].base {
            return Err(Error::Corrupted {
                file: pair[0].path.clone(),
                offset: len,
                what: format!("segment is {len} bytes long but the next segment starts at {}", pair[1].base),
            });
        }
    }
    let mut stop = Stop::End(outcome.end_pos);
    let mut seg_index = first;
    while seg_index < journal.segments.len() {
        let seg = journal.segments[seg_index].clone();
        let last = seg_index + 1 == journal.segments.len();
        let len = seg.file.len()?;
        let mut head = vec![0u8; SEGMENT_HEADER_LEN.min(len) as usize];
        seg.file.read_exact_at(&mut head, 0)?;
        if let Err(what) = check_segment_header(&head, seg.base) {
            stop = Stop::Bad(seg.base, what);
            break;
        }
        let mut pos = outcome.end_pos.max(seg.base + SEGMENT_HEADER_LEN);
        // A sealed segment's data ends where the next segment begins; bytes past that are
        // pre-allocated zeros.
        let seg_end = match journal.segments.get(seg_index + 1) {
            Some(next) => (seg.base + len).min(next.base),
            None => seg.base + len,
        };
        let mut buf: Vec<u8> = Vec::new();
        let mut buf_pos = pos;
        let mut stopped = None;
        while pos < seg_end {
            let at = (pos - buf_pos) as usize;
            let needed = match frame::decode(&buf[at..]) {
                Ok((header, _)) if pos + header.padded_len() > seg_end => {
                    // The frame is whole but its padding is not: the write that carried both
                    // never became durable, so this is a torn tail like any other.
                    stopped = Some(Stop::Bad(pos, "frame padding runs past the end of its segment".into()));
                    break;
                }
                Ok((header, payload)) => {
                    apply(pos, &header, payload)?;
                    outcome.frames += 1;
                    outcome.bytes += header.padded_len();
                    outcome.last_frame = Some((pos, header.crc));
                    pos += header.padded_len();
                    continue;
                }
                Err(FrameError::Invalid(what)) => {
                    stopped = Some(Stop::Bad(pos, what.to_string()));
                    break;
                }
                Err(FrameError::Incomplete { needed }) => frame::padded(needed.max(frame::HEADER_LEN)),
            };
            if pos + needed as u64 > seg_end {
                stopped = Some(Stop::Bad(pos, "frame runs past the end of its segment".into()));
                break;
            }
            // Refill: keep the unconsumed bytes, read the next chunk after them.
            buf.drain(..at);
            buf_pos = pos;
            let want = needed.max(CHUNK).min((seg_end - pos) as usize);
            let have = buf.len();
            if want > have {
                buf.resize(want, 0);
                seg.file.read_exact_at(&mut buf[have..], pos + have as u64 - seg.base)?;
            }
        }
        outcome.end_pos = pos;
        if let Some(s) = stopped {
            stop = s;
            break;
        }
        if !last {
            let next = journal.segments[seg_index + 1].base;
            if pos != next {
                stop = Stop::Bad(pos, format!("segment ends at {pos} but the next segment starts at {next}"));
                break;
            }
        }
        stop = Stop::End(pos);
        seg_index += 1;
    }
    let outcome = finish(journal, stop, durable, outcome)?;
    // What was just replayed may have been written by a process that died before syncing it:
    // it sits in the page cache, readable but not durable. Make it durable before it is
    // indexed, checkpointed or built upon, or a later power loss would take away data that
    // this process trusted (and that checkpoints written from now on would claim).
    journal.sync_from(first)?;
    Ok(outcome)
}

/// Decides what the end of the scan means (module docs) and cuts a torn tail.
fn finish(journal: &mut Journal, stop: Stop, durable: u64, mut outcome: ReplayOutcome) -> Result<ReplayOutcome> {
    match stop {
        Stop::End(end) => {
            outcome.end_pos = end;
            if end < durable {
                return Err(Error::Corrupted {
                    file: journal.segments[journal.segments.len() - 1].path.clone(),
                    offset: end,
                    what: format!("journal ends at position {end}, before the checkpointed durable position {durable}"),
                });
            }
            Ok(outcome)
        }
        Stop::Bad(bad, what) => {
            let seg_i = journal.segments.partition_point(|s| s.base <= bad).saturating_sub(1);
            let seg = journal.segments[seg_i].clone();
            let corrupted = |what: String| Error::Corrupted { file: seg.path.clone(), offset: bad - seg.base, what };
            if bad < durable {
                return Err(corrupted(format!("{what}, before the checkpointed durable position {durable}")));
            }
            // (Not when the segment's own header is what is missing: that is a torn segment
            // creation, and the segment goes.)
            if seg_i + 1 == journal.segments.len() && bad > seg.base && zero_tail(&seg, bad)? {
                // The pre-allocated, still unused end of the active segment: the clean end.
                outcome.end_pos = bad;
                return Ok(outcome);
            }
            let after = durable_after(journal, seg_i, bad)?;
            if let Some(proof) = after.proof {
                return Err(corrupted(format!(
                    "{what}; a later frame at journal position {proof} proves these bytes were acknowledged"
                )));
            }
            // A torn tail: cut it off durably.
            let mut truncated = 0;
            let mut segments_removed = Vec::new();
            for later in &journal.segments[seg_i + 1..] {
                truncated += later.file.len()?;
                segments_removed.push(later.path.clone());
            }
            let len = seg.file.len()?;
            journal.remove_segments_after(seg_i)?;
            let from_byte = if bad == seg.base {
                segments_removed.insert(0, seg.path.clone());
                journal.remove_last_segment()?;
                0
            } else {
                seg.file.set_len(bad - seg.base)?;
                seg.file.sync_data()?;
                bad - seg.base
            };
            truncated += len - from_byte;
            let truncation = Truncation {
                file: seg.path.clone(),
                from_byte,
                to_byte: len,
                journal_position: bad,
                bytes: truncated,
                segments_removed,
                intact_frames_cut: after.intact_frames,
                intact_bytes_cut: after.intact_bytes,
                why: what,
            };
            tracing::warn!(
                file = %truncation.file.display(),
                from_byte = truncation.from_byte,
                to_byte = truncation.to_byte,
                journal_position = truncation.journal_position,
                bytes = truncation.bytes,
                segments_removed = truncation.segments_removed.len(),
                intact_frames_cut = truncation.intact_frames_cut,
                intact_bytes_cut = truncation.intact_bytes_cut,
                why = %truncation.why,
                "recovery cut a torn tail: no valid frame starts at the journal position and nothing proves \
                 the bytes after it were acknowledged (an unsynced end left by a crash; if they were \
                 acknowledged, the media lost them)"
            );
            outcome.end_pos = bad;
            outcome.truncated_bytes = truncated;
            outcome.truncated_at = Some(bad);
            outcome.truncation = Some(truncation);
            Ok(outcome)
        }
    }
}

/// Whether every byte of `seg` from journal position `from` to the end of the file is zero.
fn zero_tail(seg: &crate::journal::Segment, from: u64) -> Result<bool> {
    let len = seg.file.len()?;
    let mut at = from - seg.base;
    let mut buf = vec![0u8; CHUNK.min((len.saturating_sub(at)) as usize)];
    while at < len {
        let n = buf.len().min((len - at) as usize);
        seg.file.read_exact_at(&mut buf[..n], at)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// What lies past a bad point.
struct After {
    /// A valid frame whose `durable_before` exceeds the bad point: the bytes were acknowledged.
    proof: Option<u64>,
    /// Valid frames found (not overlapping each other), up to the proof if there is one.
    intact_frames: u64,
    /// Their padded lengths, summed.
    intact_bytes: u64,
}

/// Looks past the bad point `bad` (in segment `seg_i`) for a valid frame whose
/// `durable_before` exceeds `bad` (returning its position), counting the valid frames met.
fn durable_after(journal: &Journal, seg_i: usize, bad: u64) -> Result<After> {
    let (mut intact_frames, mut intact_bytes) = (0, 0);
    for seg in &journal.segments[seg_i..] {
        let len = seg.file.len()?;
        if len <= SEGMENT_HEADER_LEN {
            continue;
        }
        let mut bytes = vec![0u8; len as usize];
        seg.file.read_exact_at(&mut bytes, 0)?;
        // Frames are 8-byte aligned in the journal, and segment bases are too.
        let mut off =
            if seg.base <= bad { (bad - seg.base) as usize + frame::ALIGN } else { SEGMENT_HEADER_LEN as usize };
        off = frame::padded(off);
        // Frames are counted only from the end of the last one counted, so bytes inside a
        // frame's payload that happen to look like a frame are not counted twice.
        let mut counted_to = off;
        while off + frame::HEADER_LEN <= bytes.len() {
            if bytes[off..off + 4] == frame::MAGIC {
                if let Ok((header, _)) = frame::decode(&bytes[off..]) {
                    if header.durable_before > bad {
                        return Ok(After { proof: Some(seg.base + off as u64), intact_frames, intact_bytes });
                    }
                    if off >= counted_to {
                        intact_frames += 1;
                        intact_bytes += header.padded_len();
                        counted_to = off + header.padded_len() as usize;
                    }
                }
            }
            off += frame::ALIGN;
        }
    }
    Ok(After { proof: None, intact_frames, intact_bytes })
}

impl crate::log::RecoveryReport {
    /// Why opening rebuilt the index checkpoint, if it did: damaged (rejected), missing while
    /// the journal holds data, or behind the journal (the last shutdown was not clean, so the
    /// journal's tail was replayed and a new checkpoint written). `None` for a clean open or a
    /// new store.
    pub fn checkpoint_rebuilt(&self) -> Option<String> {
        let replayed = self.replay.bytes;
        match (&self.checkpoint_rejected, self.checkpoint_loaded) {
            (Some(why), _) => Some(format!(
                "the index checkpoint is damaged ({why}); the index was rebuilt from the whole journal \
                 ({replayed} bytes replayed)"
            )),
            (None, false) if replayed > 0 => Some(format!(
                "no index checkpoint was found; the index was rebuilt from the whole journal ({replayed} bytes \
                 replayed)"
            )),
            (None, true) if replayed > 0 => Some(format!(
                "the index checkpoint was {replayed} bytes behind the journal (the last shutdown was not \
                 clean); the tail was replayed and a new checkpoint written"
            )),
            _ => None,
        }
    }
}

/// Logs at `warn` why opening rebuilt the index checkpoint, if it did (see
/// [`crate::RecoveryReport::checkpoint_rebuilt`]).
pub(crate) fn warn_checkpoint(report: &crate::log::RecoveryReport) {
    if let Some(why) = report.checkpoint_rebuilt() {
        tracing::warn!(frames_replayed = report.replay.frames, bytes_replayed = report.replay.bytes, "{why}");
    }
}
