//! Before/after: a run's headline figures saved to a file (`--save`), and a later run printed
//! beside them (`--compare`), each change as a percentage, with regressions beyond
//! [`REGRESSION_MAX`] flagged. This is how a change's cost is shown: run the old build with
//! `--save`, the new one with `--compare`, on the same machine one after the other
//! (`scripts/bench.sh --before REV` does both).
//!
//! The file is tab-separated text, one measurement per line (`system`, `workload`, `rate`,
//! `unit`), so it can be read and diffed by people and kept beside BENCHMARKS.md. Workloads are
//! matched by system and description; a workload present in only one run is listed as such.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context};

use crate::report::{num, print_table, Measurement};

/// The first line of a saved file: names the format, so another file is refused clearly.
const HEADER: &str = "# evident-bench results v1: system\tworkload\trate\tunit";

/// A change for the worse larger than this fraction is flagged as a regression.
pub const REGRESSION_MAX: f64 = 0.10;

/// One saved figure.
#[derive(Debug, Clone, PartialEq)]
struct Saved {
    system: String,
    workload: String,
    rate: f64,
    unit: String,
}

/// Writes `rows` to `path`.
pub fn save(path: &Path, rows: &[Measurement]) -> anyhow::Result<()> {
    let mut out = String::from(HEADER);
    out.push('\n');
    for m in rows {
        let field = |s: &str| s.replace(['\t', '\n'], " ");
        writeln!(out, "{}\t{}\t{}\t{}", field(&m.system.to_string()), field(&m.workload), m.rate, m.unit)?;
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// Reads a saved file, or the Markdown output of an earlier run (so a build that predates
/// `--save` can still be the "before": its stdout is the file).
fn parse(text: &str) -> anyhow::Result<Vec<Saved>> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        let rows = parse_markdown(text);
        if rows.is_empty() {
            bail!("neither a results file (first line {HEADER:?}) nor evident-bench's Markdown output");
        }
        return Ok(rows);
    }
    lines
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let f: Vec<&str> = line.split('\t').collect();
            let [system, workload, rate, unit] = f.as_slice() else {
                bail!("line {}: expected 4 tab-separated fields, found {}", i + 2, f.len());
            };
            let rate = rate.parse::<f64>().with_context(|| format!("line {}: rate {rate:?}", i + 2))?;
            Ok(Saved { system: system.to_string(), workload: workload.to_string(), rate, unit: unit.to_string() })
        })
        .collect()
}

/// The rows of the result tables in a run's Markdown output (`| workload | system | rate |
/// ...`, the rate written as `5,288 events/s`).
fn parse_markdown(text: &str) -> Vec<Saved> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
        if !line.trim_start().starts_with('|') {
            in_table = false;
            continue;
        }
        if cells.len() >= 3 && cells[0] == "workload" && cells[1] == "system" && cells[2] == "rate" {
            in_table = true;
            continue;
        }
        if !in_table || cells.len() < 3 {
            continue;
        }
        let Some((value, unit)) = cells[2].split_once(' ') else { continue };
        let Ok(rate) = value.replace(',', "").parse::<f64>() else { continue };
        rows.push(Saved { system: cells[1].to_string(), workload: cells[0].to_string(), rate, unit: unit.to_string() });
    }
    rows
}

/// Whether a larger figure is better for this unit: rates (`events/s`) and ratios (`x`) are;
/// times (`s`, `ms`) are not.
fn higher_is_better(unit: &str) -> bool {
    !matches!(unit, "s" | "ms" | "µs")
}

/// The relative change from `before` to `after`, signed so that a positive value is an
/// improvement whatever the unit.
fn improvement(before: f64, after: f64, unit: &str) -> Option<f64> {
    if before <= 0.0 || !before.is_finite() || !after.is_finite() {
        return None;
    }
    let change = (after - before) / before;
    Some(if higher_is_better(unit) { change } else { -change })
}

/// Prints the before/after table of `rows` against the file at `path`; returns the number of
/// regressions beyond [`REGRESSION_MAX`].
pub fn compare(path: &Path, rows: &[Measurement]) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let before = parse(&text).with_context(|| format!("reading {}", path.display()))?;
    let (table, regressions) = table(&before, rows);
    println!("\n### Before and after\n");
    println!(
        "Before: `{}`. A change for the worse beyond {:.0}% is marked REGRESSED.\n",
        path.display(),
        REGRESSION_MAX * 100.0
    );
    print_table(&["workload", "system", "before", "after", "change", ""], &table);
    Ok(regressions)
}

fn table(before: &[Saved], rows: &[Measurement]) -> (Vec<Vec<String>>, usize) {
    let mut out = Vec::new();
    let mut regressions = 0;
    for m in rows {
        let system = m.system.to_string();
        let old = before.iter().find(|b| b.system == system && b.workload == m.workload);
        let (was, change, flag) = match old {
            Some(b) => match improvement(b.rate, m.rate, m.unit) {
                Some(c) => {
                    let flag = if c < -REGRESSION_MAX {
                        regressions += 1;
                        "REGRESSED"
                    } else {
                        ""
                    };
                    (format!("{} {}", num(b.rate), b.unit), format!("{:+.1}%", c * 100.0), flag)
                }
                None => (format!("{} {}", num(b.rate), b.unit), "-".into(), ""),
            },
            None => ("(not measured)".into(), "-".into(), "new"),
        };
        out.push(vec![m.workload.clone(), system, was, format!("{} {}", num(m.rate), m.unit), change, flag.into()]);
    }
    for b in before {
        if !rows.iter().any(|m| m.system.to_string() == b.system && m.workload == b.workload) {
            out.push(vec![
                b.workload.clone(),
                b.system.clone(),
                format!("{} {}", num(b.rate), b.unit),
                "(not measured)".into(),
                "-".into(),
                "gone".into(),
            ]);
        }
    }
    (out, regressions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Key, System};

    fn m(workload: &str, rate: f64, unit: &'static str) -> Measurement {
        Measurement::new(System::Evident, Key::Load, workload, rate, unit)
    }

    #[test]
    fn saved_figures_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("before.tsv");
        save(&path, &[m("appends, 1 writer", 5288.5, "events/s"), m("restart\tload", 1.25, "s")]).unwrap();
        let back = parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].rate, 5288.5);
        assert_eq!(back[1].workload, "restart load");
        assert!(parse("system\tworkload\n").is_err());
    }

    #[test]
    fn markdown_output_of_an_older_build_reads_as_before() {
        let text = "## evident-bench results\n\n### Appends\n\n| workload | system | rate | MB/s | p50 | p99 | notes |\n|---|---|---|---|---|---|---|\n| appends, 1 writer | evident | 5,288 events/s | 1.2 | 1 ms | 2 ms |  |\n| ratio | evident | 0.47 x |  |  |  |  |\n\n| other | table |\n| a | b |\n";
        let rows = parse(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            Saved {
                system: "evident".into(),
                workload: "appends, 1 writer".into(),
                rate: 5288.0,
                unit: "events/s".into()
            }
        );
        assert_eq!(rows[1].rate, 0.47);
        assert!(parse("nothing here").is_err());
    }

    #[test]
    fn regressions_follow_the_unit() {
        let before = parse(&format!(
            "{HEADER}\nevident\tappends\t1000\tevents/s\nevident\trestart\t2\ts\nevident\told only\t1\tx\n"
        ))
        .unwrap();
        // Rate down 20% (worse), time down 50% (better), one new workload.
        let rows = [m("appends", 800.0, "events/s"), m("restart", 1.0, "s"), m("new one", 3.0, "x")];
        let (table, regressions) = table(&before, &rows);
        assert_eq!(regressions, 1);
        assert_eq!(table[0][4], "-20.0%");
        assert_eq!(table[0][5], "REGRESSED");
        assert_eq!(table[1][4], "+50.0%");
        assert_eq!(table[2][5], "new");
        assert_eq!(table[3][5], "gone");
    }
}
