//! Printing results as tables for people or JSON for programs.

use chrono::{DateTime, Utc};
use porthole_api::{
    AuditEntry, ConsoleSession, ExternalConsole, Group, Iso, Job, Node, SshKey, Template, User, Vm,
};
use porthole_core::LimitOverrides;
use serde::Serialize;

use crate::cli::OutputFormat;

/// Prints results in the chosen format.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    format: OutputFormat,
}

/// Something that can be shown as table rows.
pub trait Rows {
    /// The column titles.
    fn header() -> &'static [&'static str];
    /// One row's cells.
    fn row(&self) -> Vec<String>;
}

impl Printer {
    /// A printer for `format`.
    pub fn new(format: OutputFormat) -> Self {
        Self { format }
    }

    /// Whether output is JSON.
    pub fn is_json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// Prints a list.
    pub fn list<T: Rows + Serialize>(&self, items: &[T]) -> anyhow::Result<()> {
        if self.is_json() {
            return self.json(items);
        }
        let header: Vec<String> = T::header().iter().map(|h| (*h).to_owned()).collect();
        let rows: Vec<Vec<String>> = items.iter().map(Rows::row).collect();
        print_line(&columns(&header, &rows));
        Ok(())
    }

    /// Prints one item as `key: value` lines.
    pub fn one<T: Rows + Serialize>(&self, item: &T) -> anyhow::Result<()> {
        if self.is_json() {
            return self.json(item);
        }
        let width = T::header().iter().map(|h| h.len()).max().unwrap_or(0);
        let lines: Vec<String> = T::header()
            .iter()
            .zip(item.row())
            .map(|(h, v)| format!("{:width$}  {v}", h.to_lowercase()))
            .collect();
        print_line(&lines.join("\n"));
        Ok(())
    }

    /// Prints `value` as pretty JSON.
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) -> anyhow::Result<()> {
        print_line(&serde_json::to_string_pretty(value)?);
        Ok(())
    }

    /// Prints a message for people; in JSON mode, prints `value` instead.
    pub fn done<T: Serialize + ?Sized>(&self, message: &str, value: &T) -> anyhow::Result<()> {
        if self.is_json() {
            return self.json(value);
        }
        print_line(message);
        Ok(())
    }
}

/// Writes one line to stdout. The CLI's results are its output, so this is the one place
/// that prints them.
#[expect(
    clippy::print_stdout,
    reason = "printing results is what the CLI is for"
)]
pub fn print_line(text: &str) {
    println!("{text}");
}

/// Lays `rows` out in left-aligned columns under `header`, two spaces apart.
fn columns(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    std::iter::once(line(header))
        .chain(rows.iter().map(|row| line(row)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A time as `2006-01-02 15:04:05` (UTC).
pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.into()
}

/// When a VM expires: `exempt`, a time, or `-` if it never does.
pub fn expiry(vm: &Vm) -> String {
    match (vm.expiry_exempt, &vm.expires_at) {
        (true, _) => "exempt".into(),
        (false, Some(at)) => time(at),
        (false, None) => "-".into(),
    }
}

/// Until when an account is locked, or `-`.
fn locked(user: &User) -> String {
    match user.locked_until {
        Some(until) if until > Utc::now() => format!("until {}", time(&until)),
        _ => "-".into(),
    }
}

/// The limits a user's own overrides set, as `2 cores, memory inherited, ...`.
pub fn overrides(limits: &LimitOverrides) -> String {
    let part = |value: Option<u64>, unit: &str, what: &str| {
        value.map_or_else(|| format!("{what} inherited"), |n| format!("{n}{unit}"))
    };
    [
        part(limits.cores, " cores", "cores"),
        part(limits.memory_mib, " MiB memory", "memory"),
        part(limits.disk_gib, " GiB disk", "disk"),
    ]
    .join(", ")
}

/// A user in full, as `key  value` lines: limits, where they come from, and usage.
pub fn user_details(user: &User) -> String {
    let source = |own: Option<u64>| {
        if own.is_some() {
            "(own limit)"
        } else if user.groups.is_empty() {
            "(site default)"
        } else {
            "(from groups or site default)"
        }
    };
    let groups = if user.groups.is_empty() {
        "-".to_owned()
    } else {
        user.groups.join(", ")
    };
    let lines = [
        ("username", user.username.clone()),
        ("role", user.role.to_string()),
        ("email", opt(&user.email)),
        ("groups", groups),
        (
            "cores",
            format!(
                "{} of {} in use {}",
                user.usage.cores,
                user.limits.cores,
                source(user.limit_overrides.cores)
            ),
        ),
        (
            "memory",
            format!(
                "{} of {} MiB in use {}",
                user.usage.memory_mib,
                user.limits.memory_mib,
                source(user.limit_overrides.memory_mib)
            ),
        ),
        (
            "disk",
            format!(
                "{} of {} GiB in use {}",
                user.usage.disk_gib,
                user.limits.disk_gib,
                source(user.limit_overrides.disk_gib)
            ),
        ),
        ("locked", locked(user)),
        ("id", user.id.to_string()),
    ];
    lines
        .iter()
        .map(|(key, value)| format!("{key:8}  {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn opt<T: ToString>(value: &Option<T>) -> String {
    value
        .as_ref()
        .map_or_else(|| "-".into(), ToString::to_string)
}

/// A size in bytes, in the largest binary unit that keeps it above 1.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl Rows for Vm {
    fn header() -> &'static [&'static str] {
        &[
            "NAME", "STATE", "CORES", "MEMORY", "DISK", "NODE", "OWNER", "SOURCE", "EXPIRES", "ID",
        ]
    }

    fn row(&self) -> Vec<String> {
        let source = match (&self.template, &self.iso) {
            (Some(t), _) => format!("template {t}"),
            (None, Some(i)) => format!("iso {i}"),
            (None, None) => "-".into(),
        };
        vec![
            self.name.clone(),
            self.state.to_string(),
            self.cores.to_string(),
            format!("{} MiB", self.memory_mib),
            format!("{} GiB", self.disk_gib),
            self.node.clone(),
            self.owner.clone(),
            source,
            expiry(self),
            self.id.to_string(),
        ]
    }
}

impl Rows for Template {
    fn header() -> &'static [&'static str] {
        &[
            "NAME", "APPROVED", "FORMAT", "SIZE", "MIN DISK", "BOOT", "CREATED", "SHA256",
        ]
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            yes_no(self.approved),
            self.format.as_str().into(),
            bytes(self.virtual_size),
            format!("{} GiB", self.min_disk_gib),
            self.boot.clone(),
            time(&self.created_at),
            self.sha256[..16.min(self.sha256.len())].to_owned(),
        ]
    }
}

impl Rows for Node {
    fn header() -> &'static [&'static str] {
        &["NAME", "KIND", "ONLINE", "VMS", "URL", "DETAIL"]
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.kind.clone(),
            yes_no(self.online),
            self.vms.to_string(),
            self.url.clone().unwrap_or_else(|| "-".into()),
            self.detail.clone(),
        ]
    }
}

impl Rows for Iso {
    fn header() -> &'static [&'static str] {
        &["NAME", "APPROVED", "SIZE", "CREATED", "SHA256"]
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            yes_no(self.approved),
            bytes(self.size),
            time(&self.created_at),
            self.sha256[..16.min(self.sha256.len())].to_owned(),
        ]
    }
}

impl Rows for Job {
    fn header() -> &'static [&'static str] {
        &[
            "ID", "KIND", "STATE", "PROGRESS", "STEP", "ERROR", "CREATED",
        ]
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.kind.to_string(),
            self.state.to_string(),
            format!("{:.0}%", self.progress * 100.0),
            opt(&self.step),
            opt(&self.error),
            time(&self.created_at),
        ]
    }
}

impl Rows for ExternalConsole {
    fn header() -> &'static [&'static str] {
        &["NAME", "PROTOCOL", "ADDRESS", "PASSWORD", "ID"]
    }

    fn row(&self) -> Vec<String> {
        let protocol = match self.protocol {
            porthole_api::ExternalProtocol::Vnc => "vnc",
            porthole_api::ExternalProtocol::Tcp => "tcp",
        };
        let password = if self.has_password { "set" } else { "-" };
        vec![
            self.name.clone(),
            protocol.into(),
            self.address.clone(),
            password.into(),
            self.id.to_string(),
        ]
    }
}

impl Rows for ConsoleSession {
    fn header() -> &'static [&'static str] {
        &[
            "STARTED",
            "USER",
            "CONSOLE",
            "KIND",
            "FROM",
            "DURATION",
            "TO CLIENT",
            "FROM CLIENT",
            "END",
        ]
    }

    fn row(&self) -> Vec<String> {
        let duration = self.ended_at.map_or_else(
            || "open".to_owned(),
            |end| format!("{} s", (end - self.started_at).num_seconds()),
        );
        let kind = match self.kind {
            porthole_core::ConsoleKind::Vnc => "vnc",
            porthole_core::ConsoleKind::Serial => "serial",
        };
        vec![
            time(&self.started_at),
            self.username.clone(),
            self.target_name.clone(),
            format!("{kind}/{}", self.framing),
            self.remote_addr.clone(),
            duration,
            bytes(self.bytes_to_client),
            bytes(self.bytes_from_client),
            opt(&self.end_reason),
        ]
    }
}

impl Rows for User {
    fn header() -> &'static [&'static str] {
        &[
            "USERNAME", "ROLE", "GROUPS", "CORES", "MEMORY", "DISK", "LOCKED",
        ]
    }

    fn row(&self) -> Vec<String> {
        let groups = if self.groups.is_empty() {
            "-".to_owned()
        } else {
            self.groups.join(",")
        };
        vec![
            self.username.clone(),
            self.role.to_string(),
            groups,
            format!("{}/{}", self.usage.cores, self.limits.cores),
            format!("{}/{} MiB", self.usage.memory_mib, self.limits.memory_mib),
            format!("{}/{} GiB", self.usage.disk_gib, self.limits.disk_gib),
            locked(self),
        ]
    }
}

impl Rows for Group {
    fn header() -> &'static [&'static str] {
        &["NAME", "CORES", "MEMORY", "DISK", "MEMBERS"]
    }

    fn row(&self) -> Vec<String> {
        let limit = |value: Option<u64>, unit: &str| {
            value.map_or_else(|| "default".to_owned(), |n| format!("{n}{unit}"))
        };
        let members = if self.members.is_empty() {
            "-".to_owned()
        } else {
            self.members.join(",")
        };
        vec![
            self.name.clone(),
            limit(self.limits.cores, ""),
            limit(self.limits.memory_mib, " MiB"),
            limit(self.limits.disk_gib, " GiB"),
            members,
        ]
    }
}

impl Rows for SshKey {
    fn header() -> &'static [&'static str] {
        &["NAME", "TYPE", "FINGERPRINT", "ADDED", "ID"]
    }

    fn row(&self) -> Vec<String> {
        let kind = self.public_key.split_whitespace().next().unwrap_or("-");
        vec![
            self.name.clone(),
            kind.to_owned(),
            self.fingerprint.clone(),
            time(&self.created_at),
            self.id.to_string(),
        ]
    }
}

impl Rows for AuditEntry {
    fn header() -> &'static [&'static str] {
        &[
            "TIME", "ACTOR", "ACTION", "TARGET", "FROM", "OUTCOME", "DETAIL",
        ]
    }

    fn row(&self) -> Vec<String> {
        let name = self
            .target_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .or(self.target_id.as_deref());
        let target = match (&self.target_kind, name) {
            (Some(kind), Some(name)) => format!("{kind} {name}"),
            (Some(kind), None) => kind.clone(),
            (None, Some(name)) => name.to_owned(),
            (None, None) => "-".into(),
        };
        let detail = self
            .detail
            .as_deref()
            .map_or_else(|| "-".to_owned(), |d| d.replace(['\n', '\r'], " "));
        vec![
            time(&self.at),
            self.actor.clone(),
            self.action.clone(),
            target,
            opt(&self.remote_addr),
            self.outcome.clone(),
            detail,
        ]
    }
}
