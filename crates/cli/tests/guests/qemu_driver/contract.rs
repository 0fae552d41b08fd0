//! The QEMU driver keeps the `Driver` contract, with the real test guest; the fast tier puts
//! the fake driver through the same checks (`porthole_testing::contract`).

use porthole_testing::contract::{self, Subject};
use porthole_testing::guest::make_iso;
use porthole_testing::qemu_node::{GUEST_TIMEOUT, Node, guest_definition};

#[tokio::test]
async fn the_qemu_driver_keeps_the_driver_contract() {
    let node = Node::new().await;
    let scratch = tempfile::tempdir().unwrap();
    let iso = make_iso(
        scratch.path(),
        "contract",
        "CONTRACT",
        &[("README", "contract")],
    );
    let subject = Subject {
        driver: node.driver.clone(),
        definition: guest_definition(None),
        iso: node.images.add_iso(&iso),
        boot_timeout: GUEST_TIMEOUT,
    };
    contract::check(&subject).await;
    assert!(
        std::fs::read_dir(&node.root).unwrap().next().is_none(),
        "the contract leaves no VM directory behind"
    );
}
