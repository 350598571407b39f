//! The runner's dead-letter journal: writing records to the projection's dead-letter topic
//! (under a fresh id when an earlier record holds the id) and reconciling the topic with
//! `evident_parked`, the authority (see the runner's module doc).

use super::*;

impl<P: Projection> Core<P> {
    /// Writes `record` to the dead-letter journal, under a fresh id if its id was used before.
    pub(super) fn journal(&self, stream: &str, mut record: EventData) -> Result<()> {
        self.journal_writes.fetch_add(1, Ordering::Relaxed);
        let out = self.wait(self.backend.append(
            &self.dlq_topic,
            stream,
            ExpectedVersion::Any,
            std::slice::from_ref(&record),
        ))?;
        if out.duplicate {
            // An earlier record of this entry holds the id, and a later one may have resolved it
            // (a rebuild parks again what the live runner resolved): the record must land.
            record.id = format!("{}-{}", record.id, uuid::Uuid::new_v4());
            self.wait(self.backend.append(&self.dlq_topic, stream, ExpectedVersion::Any, &[record]))?;
        }
        Ok(())
    }

    /// Makes the dead-letter journal agree with `evident_parked` (see the module doc). Only
    /// the live runner does: a rebuild's parked set is partial until it is swapped in.
    pub(super) fn reconcile(&mut self) -> Result<()> {
        if !self.reconcile_pending || self.key != self.name {
            return Ok(());
        }
        let listed = self.wait(self.dead_letters().list())?;
        let key = self.key.clone();
        let mut held: BTreeMap<u64, (String, Kind)> = BTreeMap::new();
        for row in self.query_bookkeeping(
            "SELECT sequence, stream, kind FROM evident_parked WHERE projection = $1 ORDER BY sequence",
            &[&key],
        )? {
            let seq = u64::try_from(int(&row, 0)?).map_err(|_| Error::Sink("negative parked sequence".into()))?;
            let stream = row.get(1).and_then(SqlValue::as_str).unwrap_or_default().to_string();
            let kind = if row.get(2).and_then(SqlValue::as_str) == Some("held") { Kind::Held } else { Kind::Parked };
            held.insert(seq, (stream, kind));
        }
        let mut seen = HashSet::new();
        for entry in listed.values().flatten() {
            let sequence = entry.sequence.0;
            seen.insert(sequence);
            if !held.contains_key(&sequence) {
                tracing::info!(projection = %self.name, stream = %entry.stream, sequence, "dead-letter entry no longer held: resolved in the journal");
                self.journal(&entry.stream, dead_letter::resolved(&self.name, sequence, "applied"))?;
            }
        }
        for (seq, (stream, kind)) in held {
            if seen.contains(&seq) {
                continue;
            }
            let Some(original) = self.event_at(seq)? else {
                continue; // its topic was deleted; a retry resolves it
            };
            let why = "listed again: the runner holds this event but the journal had resolved it";
            self.journal(&stream, dead_letter::parked(&self.name, &original, kind, why, 0))?;
        }
        self.reconcile_pending = false;
        Ok(())
    }
}
