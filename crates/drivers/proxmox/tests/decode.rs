//! Decoding of answers shaped like real PVE 7, 8 and 9 servers send, including the
//! string-or-number and 0/1-or-bool variants.

use porthole_proxmox::types::{
    ClusterVm, NodeState, NodeSummary, PoolDetail, QemuConfig, QemuStatus, TermProxy, VmRunState,
    VncProxy,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;

#[derive(Deserialize)]
struct Data<T> {
    data: T,
}

fn fixture<T: DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str::<Data<T>>(&text)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .data
}

#[test]
fn cluster_resources_pve7_numbers_and_strings() {
    let vms: Vec<ClusterVm> = fixture("cluster_resources_pve7.json");
    assert_eq!(vms.len(), 3);
    assert_eq!(vms[0].vmid, 100);
    assert_eq!(vms[0].status, VmRunState::Running);
    assert_eq!(vms[0].cpu, Some(0.0153));
    assert_eq!(vms[0].uptime, Some(86400));
    assert!(!vms[0].template);
    // vmid, maxmem and maxcpu as strings.
    assert_eq!(vms[1].vmid, 101);
    assert_eq!(vms[1].maxmem, Some(1_073_741_824));
    assert_eq!(vms[1].maxcpu, Some(1.0));
    assert!(vms[1].template);
    assert_eq!(vms[1].status, VmRunState::Stopped);
    // Containers come too; cpu as a string.
    assert!(!vms[2].is_qemu());
    assert_eq!(vms[2].cpu, Some(0.01));
    assert_eq!(vms[2].pool.as_deref(), Some("alice"));
}

#[test]
fn cluster_resources_pve8_pools_tags_and_missing_fields() {
    let vms: Vec<ClusterVm> = fixture("cluster_resources_pve8.json");
    assert_eq!(vms[0].pool.as_deref(), Some("alice"));
    assert_eq!(vms[0].tags.as_deref(), Some("porthole;alice"));
    // A VM being cloned: no name, no uptime, no cpu, a lock.
    assert_eq!(vms[1].name, None);
    assert_eq!(vms[1].uptime, None);
    assert_eq!(vms[1].cpu, None);
    assert_eq!(vms[1].lock.as_deref(), Some("clone"));
}

#[test]
fn cluster_resources_pve9_booleans_and_new_fields() {
    let vms: Vec<ClusterVm> = fixture("cluster_resources_pve9.json");
    assert!(!vms[0].template);
    assert_eq!(vms[0].mem, Some(4_294_967_296));
    assert_eq!(vms[0].uptime, Some(42));
    assert_eq!(vms[0].cpu, Some(1.25));
}

#[test]
fn qemu_config_memory_as_int_string_and_property_string() {
    let v7: QemuConfig = fixture("qemu_config_pve7.json");
    assert_eq!(v7.memory, Some(2048));
    assert_eq!(v7.cores, Some(2));
    assert_eq!(v7.sockets, Some(1));
    assert_eq!(
        v7.ide2.as_deref(),
        Some("local:iso/debian-11.iso,media=cdrom")
    );
    assert_eq!(v7.boot.as_deref(), Some("order=scsi0;ide2;net0"));
    assert!(v7.scsi0.is_some() && v7.virtio0.is_none());

    let v8: QemuConfig = fixture("qemu_config_pve8.json");
    assert_eq!(v8.memory, Some(4096));
    assert_eq!(v8.cores, Some(4));
    assert!(!v8.template);
    assert_eq!(v8.description.as_deref(), Some("porthole VM\nowner alice"));
    assert!(v8.virtio0.is_some());

    let v9: QemuConfig = fixture("qemu_config_pve9.json");
    assert_eq!(v9.memory, Some(8192));
    assert!(v9.template);
    assert_eq!(v9.sockets, None);
}

#[test]
fn status_current_running_and_stopped() {
    let running: QemuStatus = fixture("status_current_running.json");
    assert_eq!(running.vmid, 100);
    assert_eq!(running.uptime, Some(1234));
    assert_eq!(running.pid, Some(12345));
    assert!(!running.is_paused());
    let stopped: QemuStatus = fixture("status_current_stopped.json");
    assert_eq!(stopped.vmid, 100);
    assert_eq!(stopped.status, VmRunState::Stopped);
    assert_eq!(stopped.uptime, None);
    assert_eq!(stopped.pid, None);
    assert_eq!(stopped.maxmem, Some(2_147_483_648));
    assert_eq!(stopped.cpus, Some(2.0));
}

#[test]
fn paused_vm_is_running_with_qmp_paused() {
    let s: QemuStatus =
        serde_json::from_str(r#"{"vmid":100,"status":"running","qmpstatus":"paused","uptime":5}"#)
            .unwrap();
    assert!(s.is_paused());
}

#[test]
fn nodes_online_and_offline() {
    let nodes: Vec<NodeSummary> = fixture("nodes.json");
    assert_eq!(nodes[0].status, NodeState::Online);
    assert_eq!(
        nodes[0].free_memory(),
        Some(67_430_772_736 - 13_490_724_864)
    );
    assert_eq!(nodes[1].status, NodeState::Offline);
    assert_eq!(nodes[1].free_memory(), None);
}

#[test]
fn nextid_as_string_or_number() {
    #[derive(Deserialize)]
    struct NextId(#[serde(deserialize_with = "porthole_proxmox::lenient::u32_lenient")] u32);
    for doc in [r#"{"data":"100"}"#, r#"{"data":100}"#] {
        let Data { data: NextId(id) } = serde_json::from_str(doc).unwrap();
        assert_eq!(id, 100);
    }
}

#[test]
fn vncproxy_port_as_string_and_secrets_redacted() {
    let proxy: VncProxy = fixture("vncproxy.json");
    assert_eq!(proxy.port, 5900);
    assert_eq!(proxy.user, "root@pam");
    assert_eq!(proxy.upid.task_type(), "vncproxy");
    assert_eq!(
        proxy.password.as_ref().map(|p| p.expose()),
        Some("Ab3dEf9h")
    );
    let debug = format!("{proxy:?}");
    assert!(
        !debug.contains("Ab3dEf9h") && !debug.contains("abcdefsignature"),
        "{debug}"
    );

    let term: TermProxy = fixture("termproxy.json");
    assert_eq!(term.port, 5901);
    assert_eq!(
        term.login_line().expose(),
        "alice@pve:PVEVNC:6650F00E::termsig\n"
    );
    assert!(!format!("{term:?}").contains("termsig"));
}

#[test]
fn pool_members() {
    let pool: PoolDetail = fixture("pool.json");
    assert_eq!(pool.members.len(), 2);
    assert_eq!(pool.members[0].vmid, Some(110));
    assert_eq!(pool.members[1].kind, "storage");
}
