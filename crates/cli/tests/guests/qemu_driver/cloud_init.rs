//! A VM with cloud-init data gets a NoCloud seed that the (real, TCG) test guest reads and
//! applies: hostname, user, password hash and SSH keys.

use porthole_core::CloudInit;
use porthole_core::driver::{Driver, DriverError, NoProgress};
use porthole_testing::qemu_node::{Node, guest_definition};
use sha_crypt::{PasswordHasher, ShaCrypt};

/// A random password of letters and digits, so it can be typed into a shell unquoted.
fn random_password() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("pw{nanos:x}")
}

fn rand_bytes() -> [u8; 12] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        .to_le_bytes();
    std::array::from_fn(|i| nanos[i])
}

#[tokio::test]
async fn the_guest_applies_the_seed() {
    let node = Node::new().await;
    let password = random_password();
    // 12 random bytes make the 16-character salt crypt(3) uses; sha-crypt's own default
    // salt is longer, which crypt(3) would truncate (and the driver refuses).
    let salt: [u8; 12] = rand_bytes();
    let hash = ShaCrypt::SHA512
        .hash_password_with_salt(password.as_bytes(), &salt)
        .unwrap()
        .to_string();
    let tricky_key = "command=\"echo \\\"hi\\\"\" ssh-rsa AAAAB3NzaC1yc2E bob@host #: - x";
    let ci = CloudInit {
        hostname: "seeded".into(),
        user: "alice".into(),
        password_hash: hash.clone(),
        ssh_keys: vec![
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKtest alice@laptop".into(),
            tricky_key.into(),
        ],
    };
    let def = node.create(Some(ci)).await;
    let vm = def.id;
    let files = node.files(vm);
    assert!(files.seed().is_file());
    // Creating again (a re-run job) succeeds and keeps the VM.
    node.driver.create(&def, &NoProgress).await.unwrap();

    node.driver.start(vm).await.unwrap();
    let at = node
        .wait_for(
            vm,
            0,
            "porthole-guest cloud-init: hostname=seeded user=alice password=set keys=2",
        )
        .await;
    node.wait_for(vm, at, "porthole-guest ready").await;
    node.wait_for_shell(vm).await;

    let out = node.run(vm, "hostname; grep '^alice:' /etc/shadow").await;
    assert!(out.contains("\nseeded\r\n"), "{out}");
    assert!(out.contains(&format!("alice:{hash}:")), "{out}");

    // The guest's own crypt agrees that the stored hash is this password's.
    // The salt with its `rounds=N$` prefix, if any: everything between `$6$` and the last `$`.
    let salt = &hash[3..hash.rfind('$').unwrap()];
    let check = format!(
        "[ \"$(mkpasswd -m sha512 {password} '{salt}')\" = \"$(grep '^alice:' /etc/shadow | cut -d: -f2)\" ] && echo pass-$((20 + 22))-ok"
    );
    let out = node.run(vm, &check).await;
    assert!(out.contains("pass-42-ok"), "{out}");

    // Both keys arrive intact, the tricky one byte for byte.
    let out = node
        .run(
            vm,
            "wc -l < /home/alice/.ssh/authorized_keys; tail -n 1 /home/alice/.ssh/authorized_keys",
        )
        .await;
    assert!(out.contains("\n2\r\n"), "{out}");
    assert!(out.contains(&format!("\n{tricky_key}\r\n")), "{out}");

    // The seed is a second virtio disk: the data disk is still /dev/vda, mounted at /data.
    let out = node.run(vm, "cat /data/README").await;
    assert!(out.contains("porthole demo data disk"), "{out}");

    node.driver.delete(vm).await.unwrap();
    assert!(!files.dir().exists());
}

#[tokio::test]
async fn invalid_cloud_init_is_refused_before_anything_is_written() {
    let node = Node::new().await;
    let def = guest_definition(Some(CloudInit {
        hostname: "seeded".into(),
        user: "alice\n    sudo: ALL".into(),
        password_hash: String::new(),
        ssh_keys: vec![],
    }));
    let err = node.driver.create(&def, &NoProgress).await.unwrap_err();
    assert!(matches!(err, DriverError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("cloud_init.user"), "{err}");
    assert!(!node.files(def.id).dir().exists());
}

#[tokio::test]
async fn a_missing_seed_is_rewritten_at_start_and_no_seed_prints_nothing() {
    let node = Node::new().await;
    let ci = CloudInit {
        hostname: "again".into(),
        user: "bob".into(),
        password_hash: String::new(),
        ssh_keys: vec![],
    };
    let def = node.create(Some(ci)).await;
    std::fs::remove_file(node.files(def.id).seed()).unwrap();
    node.driver.start(def.id).await.unwrap();
    node.wait_for(
        def.id,
        0,
        "porthole-guest cloud-init: hostname=again user=bob password=none keys=0",
    )
    .await;

    let plain = node.create(None).await;
    assert!(!node.files(plain.id).seed().exists());
    node.driver.start(plain.id).await.unwrap();
    node.wait_for_shell(plain.id).await;
    let output = node.output(plain.id).await;
    assert!(
        !String::from_utf8_lossy(&output).contains("cloud-init:"),
        "a guest without a seed printed a cloud-init line"
    );
    node.driver.delete(def.id).await.unwrap();
    node.driver.delete(plain.id).await.unwrap();
}
