//! Shared pieces of porthole's benchmarks: starting a real plane, summarising samples, and
//! replacing a marked section of docs/BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A `porthole serve` started for a benchmark; killed (with its VMs) when dropped.
#[derive(Debug)]
pub struct Plane {
    child: Child,
    /// Its base URL.
    pub url: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    log: PathBuf,
}

impl Plane {
    /// Starts `binary serve` with the demo template from `guest`, in `dir`, with `extra`
    /// arguments.
    pub fn start(
        binary: &Path,
        guest: &Path,
        dir: &Path,
        admin_password: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let data_dir = dir.join("d");
        let log = dir.join("serve.log");
        let child = Command::new(binary)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--accel",
                "auto",
                "--demo",
                "--data-dir",
            ])
            .arg(&data_dir)
            .arg("--demo-guest")
            .arg(guest)
            .args(extra)
            .env("PORTHOLE_ADMIN_PASSWORD", admin_password)
            .env("PORTHOLE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("running {}", binary.display()))?;
        let started = Instant::now();
        let mut plane = Plane {
            child,
            url: String::new(),
            data_dir,
            log,
        };
        loop {
            let text = std::fs::read_to_string(&plane.log).unwrap_or_default();
            if let Some(rest) = text
                .lines()
                .find_map(|l| l.strip_prefix("porthole: serving on "))
            {
                plane.url = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                return Ok(plane);
            }
            if plane.child.try_wait()?.is_some() || started.elapsed() > Duration::from_secs(60) {
                bail!("porthole serve did not start:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Plane {
    /// The plane's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let marker = self.data_dir.to_string_lossy().into_owned();
        let _ = Command::new("pkill").args(["-9", "-f", &marker]).status();
    }
}

/// Order statistics of a set of durations.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// The fastest sample.
    pub min: Duration,
    /// The median.
    pub p50: Duration,
    /// The 90th percentile.
    pub p90: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The slowest sample.
    pub max: Duration,
}

/// Summarises `samples` (at least one).
pub fn summarise(samples: &[Duration]) -> Summary {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    Summary {
        min: sorted[0],
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        max: sorted[sorted.len() - 1],
    }
}

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Replaces the text between `<!-- begin NAME -->` and `<!-- end NAME -->` in `path` with
/// `body`, appending the section if it is not there yet.
pub fn write_section(path: &Path, name: &str, body: &str) -> anyhow::Result<()> {
    let begin = format!("<!-- begin {name} -->");
    let end = format!("<!-- end {name} -->");
    let text = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let section = format!("{begin}\n{}\n{end}", body.trim_end());
    let updated = match (text.find(&begin), text.find(&end)) {
        (Some(b), Some(e)) if b < e => format!("{}{section}{}", &text[..b], &text[e + end.len()..]),
        _ => format!("{}\n\n{section}\n", text.trim_end()),
    };
    std::fs::write(path, updated).with_context(|| format!("writing {}", path.display()))
}
