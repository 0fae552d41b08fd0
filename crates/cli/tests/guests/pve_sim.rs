//! The simulator with a real guest behind it: QEMU boots the test guest, and its serial
//! console answers through PVE's termproxy (`vncwebsocket` with a `USER:TICKET` login line).
//! The simulator's other tests need no guest and stay with it (`crates/pve-sim/tests`); both
//! use the PVE client in `porthole_testing::pve`.

use porthole_pve_sim::{PveSim, QemuBackend, SimVm, VM_USER};
use porthole_testing::guest::guest_dir;
use porthole_testing::pve::{client, session, termproxy_read_until};

#[tokio::test]
async fn qemu_guest_through_termproxy() {
    let backend = std::sync::Arc::new(QemuBackend::new(guest_dir()).unwrap());
    let sim = PveSim::builder()
        .user("alice@pve", "alicepw")
        .acl("alice@pve", "/vms", VM_USER, true)
        .vm(SimVm::new(100, "pve1", "guest").memory(256).running())
        .backend(backend)
        .plain_http()
        .spawn("127.0.0.1:0")
        .await
        .unwrap();
    let c = client();
    let alice = session(&c, &sim.api_url(), "alice@pve", "alicepw").await;
    termproxy_read_until(&sim, &alice, &c, "porthole-guest ready", false).await;
}
