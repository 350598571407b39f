//! Rebuilding a projection: replaying the whole feed into twins of its tables (`<table>__rebuild`)
//! under its own checkpoint, then swapping them in, with their checkpoint, parked set and index
//! names, in one transaction.

use super::*;

impl<P: Projection> Core<P> {
    /// Rebuilds the projection from the start of the feed into fresh twins of its tables,
    /// reporting progress, then swaps them in (in one transaction) with the checkpoint and
    /// parked entries they reached. The live tables stay readable until the swap. Run it
    /// while no live runner of the same projection is running; it returns the live runner.
    pub(crate) fn rebuild(
        rt: tokio::runtime::Handle,
        backend: Arc<dyn Backend>,
        sink: Sink,
        projection: P,
        options: RunnerOptions,
        progress: impl FnMut(&Progress),
    ) -> Result<Self> {
        let mut runner = Self::open(rt, backend, sink, projection, options, true)?;
        runner.catch_up_with(progress)?;
        let tables = runner.projection.tables();
        let live = runner.name.clone();
        let rebuild_key = runner.key.clone();
        let position = runner.position;
        runner.transaction(|r| {
            let mut names = TableNames::default();
            let mut tx = r.sink.tx(&mut names);
            for t in &tables {
                tx.batch(&format!("DROP TABLE IF EXISTS {t}")).map_err(sql)?;
                tx.batch(&format!("ALTER TABLE {t}{REBUILD_SUFFIX} RENAME TO {t}")).map_err(sql)?;
            }
            tx.execute("DELETE FROM evident_checkpoints WHERE projection = $1", &[&rebuild_key]).map_err(sql)?;
            tx.execute("DELETE FROM evident_checkpoints WHERE projection = $1", &[&live]).map_err(sql)?;
            tx.execute(
                "INSERT INTO evident_checkpoints (projection, position, updated_ms) VALUES ($1, $2, $3)",
                &[&live, &seq_param(position)?, &now_ms()],
            )
            .map_err(sql)?;
            tx.execute("DELETE FROM evident_parked WHERE projection = $1", &[&live]).map_err(sql)?;
            tx.execute("UPDATE evident_parked SET projection = $1 WHERE projection = $2", &[&live, &rebuild_key])
                .map_err(sql)?;
            // Index names are global and a table rename keeps them: give the swapped tables'
            // indexes their live names, so the next rebuild's twins can have their own.
            for t in &tables {
                rename_rebuild_indexes(&mut tx, t)?;
            }
            // Recreate whatever the live names still lack (SQLite cannot rename an index).
            let mut live_names = TableNames::new(&tables, "");
            let mut tx = r.sink.tx(&mut live_names);
            r.projection.setup(&mut tx).map_err(|e| Error::Sink(format!("setup of {} after the swap: {e}", r.name)))?;
            Ok(())
        })?;
        runner.key = live;
        runner.names = TableNames::new(&tables, "");
        // The journal still lists the live runner's entries, which the rebuild may have applied.
        runner.reconcile_pending = true;
        runner.reconcile()?;
        Ok(runner)
    }
}

/// After a rebuild's swap, renames table `t`'s indexes named after its rebuild twin
/// (`{t}__rebuild...`) to the live name (PostgreSQL), or drops them so that the projection's
/// `setup` recreates them under the live name (SQLite, which cannot rename an index; its
/// constraint indexes follow the table by themselves).
fn rename_rebuild_indexes(tx: &mut Tx<'_>, t: &str) -> Result<()> {
    let twin = format!("{t}{REBUILD_SUFFIX}");
    match tx.dialect() {
        crate::projection::Dialect::Postgres => {
            let rows = tx
                .query(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1 \
                     AND strpos(indexname, $2) > 0",
                    &[&t, &twin],
                )
                .map_err(sql)?;
            for name in rows.iter().filter_map(|r| r.first().and_then(SqlValue::as_str)) {
                let renamed = name.replacen(&twin, t, 1);
                tx.batch(&format!("ALTER INDEX \"{name}\" RENAME TO \"{renamed}\"")).map_err(sql)?;
            }
        }
        crate::projection::Dialect::Sqlite => {
            let rows = tx
                .query(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 AND sql IS NOT NULL \
                     AND instr(name, $2) > 0",
                    &[&t, &twin],
                )
                .map_err(sql)?;
            for name in rows.iter().filter_map(|r| r.first().and_then(SqlValue::as_str)) {
                tx.batch(&format!("DROP INDEX \"{name}\"")).map_err(sql)?;
            }
        }
    }
    Ok(())
}
