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
            if let Some(proof) = durable_after(journal, seg_i, bad)? {
                return Err(corrupted(format!(
                    "{what}; a later frame at journal position {proof} proves these bytes were acknowledged"
                )));
            }
            // A torn tail: cut it off durably.
            let mut truncated = 0;
            for later in &journal.segments[seg_i + 1..] {
                truncated += later.file.len()?;
            }
            journal.remove_segments_after(seg_i)?;
            if bad == seg.base {
                truncated += seg.file.len()?;
                journal.remove_last_segment()?;
            } else {
                let len = seg.file.len()?;
                truncated += len - (bad - seg.base);
                seg.file.set_len(bad - seg.base)?;
                seg.file.sync_data()?;
            }
            outcome.end_pos = bad;
            outcome.truncated_bytes = truncated;
            outcome.truncated_at = Some(bad);
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

/// Looks past the bad point `bad` (in segment `seg_i`) for a valid frame whose
/// `durable_before` exceeds `bad`; returns its position.
fn durable_after(journal: &Journal, seg_i: usize, bad: u64) -> Result<Option<u64>> {
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
        while off + frame::HEADER_LEN <= bytes.len() {
            if bytes[off..off + 4] == frame::MAGIC {
                if let Ok((header, _)) = frame::decode(&bytes[off..]) {
                    if header.durable_before > bad {
                        return Ok(Some(seg.base + off as u64));
                    }
                }
            }
            off += frame::ALIGN;
        }
    }
    Ok(None)
}
