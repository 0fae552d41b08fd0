//! `/nodes/{node}/qemu/{vmid}/config`: reading a VM's config (with its digest) and changing
//! it (`POST` as a task, `PUT` at once), plus the key table, the privilege each key needs and
//! the value checks that creating and cloning a VM share.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::ApiResult;
use super::checks::{check_vm, find_vm};
use super::qemu::vm_task;
use super::request::{Params, parse_int};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::state::{Sim, is_disk_key};

/// Config keys the simulator accepts, beyond the numbered device slots.
const CONFIG_KEYS: &[&str] = &[
    "name",
    "memory",
    "balloon",
    "cores",
    "sockets",
    "cpu",
    "vcpus",
    "ostype",
    "description",
    "onboot",
    "boot",
    "bootdisk",
    "scsihw",
    "agent",
    "vga",
    "tags",
    "bios",
    "machine",
    "kvm",
    "numa",
    "tablet",
    "protection",
    "ciuser",
    "cipassword",
    "sshkeys",
    "ipconfig0",
    "nameserver",
    "searchdomain",
    "cdrom",
    "hotplug",
    "acpi",
    "localtime",
    "startup",
];

pub(super) fn is_config_key(k: &str) -> bool {
    CONFIG_KEYS.contains(&k)
        || is_disk_key(k)
        || ["net", "serial", "usb", "hostpci", "unused", "ipconfig"]
            .iter()
            .any(|p| {
                k.strip_prefix(p)
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            })
}

/// The privilege PVE wants to change a config key.
fn config_privilege(k: &str, v: &str) -> &'static str {
    match k {
        "memory" | "balloon" => "VM.Config.Memory",
        "cores" | "sockets" | "cpu" | "vcpus" | "numa" => "VM.Config.CPU",
        "cdrom" => "VM.Config.CDROM",
        k if is_disk_key(k) && v.contains("media=cdrom") => "VM.Config.CDROM",
        k if is_disk_key(k) || k.starts_with("unused") => "VM.Config.Disk",
        k if k.starts_with("net") => "VM.Config.Network",
        "ciuser" | "cipassword" | "sshkeys" | "nameserver" | "searchdomain" => {
            "VM.Config.Cloudinit"
        }
        k if k.starts_with("ipconfig") => "VM.Config.Cloudinit",
        "scsihw" | "vga" | "bios" | "machine" | "tablet" | "acpi" => "VM.Config.HWType",
        _ => "VM.Config.Options",
    }
}

pub(super) fn validate_config_value(k: &str, v: &str) -> Result<String, ApiError> {
    match k {
        "memory" => {
            let n = parse_int(k, v)?;
            if n < 16 {
                return Err(ApiError::param(k, "value must have a minimum value of 16"));
            }
            Ok(n.to_string())
        }
        "cores" | "sockets" => {
            let n = parse_int(k, v)?;
            if n < 1 {
                return Err(ApiError::param(k, "value must have a minimum value of 1"));
            }
            Ok(n.to_string())
        }
        "name" => {
            let ok = !v.is_empty()
                && v.len() <= 63
                && v.split('.').all(|l| {
                    !l.is_empty()
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if ok {
                Ok(v.to_owned())
            } else {
                Err(ApiError::param(
                    k,
                    "value does not look like a valid DNS name",
                ))
            }
        }
        _ if is_disk_key(k) && !v.contains("media=cdrom") => {
            // `STORAGE:SIZE_IN_GiB` allocates a new volume; anything else is kept as given.
            let first = v.split(',').next().unwrap_or("");
            match first.split_once(':') {
                Some((storage, size))
                    if !size.is_empty() && size.chars().all(|c| c.is_ascii_digit()) =>
                {
                    Ok(format!("{storage}:vm-disk-{k},size={size}G"))
                }
                _ => Ok(v.to_owned()),
            }
        }
        _ => Ok(v.to_owned()),
    }
}

fn digest(config: &BTreeMap<String, String>) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for (k, v) in config {
        h.update(format!("{k}: {v}\n").as_bytes());
    }
    hex::encode(&h.finalize()[..20])
}

pub(super) fn get_config(sim: &Sim, who: &Identity, node: &str, vmid: u32) -> ApiResult {
    let vm = find_vm(sim, node, vmid)?;
    check_vm(sim, who, vmid, "VM.Audit")?;
    let mut m = Map::new();
    for (k, v) in &vm.config {
        let value = match k.as_str() {
            // A variant real servers send: memory as a string; cores and sockets as numbers.
            "memory" => json!(v),
            "cores" | "sockets" | "onboot" | "balloon" => {
                v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n))
            }
            _ => json!(v),
        };
        m.insert(k.clone(), value);
    }
    if vm.template {
        m.insert("template".into(), json!(1));
    }
    m.insert("digest".into(), json!(digest(&vm.config)));
    Ok(Value::Object(m))
}

pub(super) fn set_config(
    sim: &Arc<Sim>,
    who: &Identity,
    node: &str,
    vmid: u32,
    params: &Params,
    asynchronous: bool,
) -> ApiResult {
    let vm = find_vm(sim, node, vmid)?;
    let mut changes = BTreeMap::new();
    let mut deletes = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "digest" | "skiplock" | "background_delay" | "revert" => {}
            "delete" => deletes.extend(
                v.split([',', ';', ' '])
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            ),
            k if is_config_key(k) => {
                changes.insert(k.to_owned(), validate_config_value(k, v)?);
            }
            k => {
                return Err(ApiError::param(
                    k,
                    "property is not defined in schema and the schema does not allow additional properties",
                ));
            }
        }
    }
    for (k, v) in &changes {
        check_vm(sim, who, vmid, config_privilege(k, v))?;
    }
    for k in &deletes {
        if !is_config_key(k) {
            return Err(ApiError::param(
                "delete",
                format!("invalid configuration key '{k}'"),
            ));
        }
        check_vm(sim, who, vmid, config_privilege(k, ""))?;
    }
    if changes.is_empty() && deletes.is_empty() {
        return Err(ApiError::internal("no options specified"));
    }
    if let Some(d) = params.get("digest")
        && *d != digest(&vm.config)
    {
        return Err(ApiError::internal(
            "detected modified configuration - file changed by other user? Try again.",
        ));
    }
    {
        let mut st = sim.lock();
        if let Some(vm) = st.vms.get_mut(&vmid) {
            vm.config.extend(changes);
            for k in &deletes {
                vm.config.remove(k);
            }
        }
    }
    if asynchronous {
        vm_task(sim, who, node, "qmconfig", vmid, async { Ok(()) })
    } else {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_privileges() {
        assert_eq!(config_privilege("memory", "2048"), "VM.Config.Memory");
        assert_eq!(
            config_privilege("ide2", "local:iso/x.iso,media=cdrom"),
            "VM.Config.CDROM"
        );
        assert_eq!(config_privilege("scsi0", "local-lvm:32"), "VM.Config.Disk");
        assert_eq!(
            config_privilege("net0", "virtio,bridge=vmbr0"),
            "VM.Config.Network"
        );
    }
}
