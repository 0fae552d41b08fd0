//! `porthole vm ...`.

use porthole_api::{CreateVmRequest, GuestLogin, Job, UpdateVmRequest, Vm};
use porthole_core::spec::gib_to_hold;

use super::Session;
use super::users::read_public_key;
use crate::cli::{CreateVmArgs, ResizeArgs, VmActionArgs, VmCommand};
use crate::output::{print_line, time};
use crate::progress::wait_for_job;

/// Disk size for an ISO install when none is given.
const DEFAULT_ISO_DISK_GIB: u64 = 8;

pub async fn run(session: &Session, command: &VmCommand) -> anyhow::Result<()> {
    let (client, print) = (&session.client, &session.print);
    match command {
        VmCommand::List => print.list(&client.vms().await?),
        VmCommand::Show { vm } => print.one(&client.find_vm(vm).await?),
        VmCommand::Create(args) => create(session, args).await,
        VmCommand::Start(args) => action(session, args, "start").await,
        VmCommand::Stop(args) => action(session, args, "stop").await,
        VmCommand::Shutdown(args) => action(session, args, "shutdown").await,
        VmCommand::Reset(args) => action(session, args, "reset").await,
        VmCommand::Suspend(args) => action(session, args, "suspend").await,
        VmCommand::Resume(args) => action(session, args, "resume").await,
        VmCommand::Delete(args) => {
            let vm = client.find_vm(&args.vm).await?;
            let job = client.delete_vm(vm.id).await?.job;
            follow(
                session,
                job,
                args.wait.wait,
                &format!("{} deleted", vm.name),
            )
            .await
        }
        VmCommand::Resize(args) => resize(session, args).await,
        VmCommand::Renew { vm } => {
            let vm = client.find_vm(vm).await?;
            let vm = client.renew_vm(vm.id).await?;
            print.done(&expiry_line(&vm), &vm)
        }
        VmCommand::Exempt { vm, off } => {
            let vm = client.find_vm(vm).await?;
            let request = UpdateVmRequest {
                expiry_exempt: Some(!off),
                ..Default::default()
            };
            let vm = client.update_vm(vm.id, &request).await?;
            print.done(&expiry_line(&vm), &vm)
        }
        VmCommand::Log { vm } => {
            let vm = client.find_vm(vm).await?;
            let output = client.console_output(vm.id).await?;
            if print.is_json() {
                print.json(&serde_json::json!({ "vm": vm.id, "output": output }))
            } else {
                print_line(output.trim_end());
                Ok(())
            }
        }
    }
}

async fn create(session: &Session, args: &CreateVmArgs) -> anyhow::Result<()> {
    let client = &session.client;
    let disk_gib = match (args.disk, &args.template) {
        (Some(disk), _) => disk,
        (None, Some(template)) => client
            .templates()
            .await?
            .into_iter()
            .find(|t| &t.name == template)
            .map_or(1, |t| gib_to_hold(t.virtual_size)),
        (None, None) => DEFAULT_ISO_DISK_GIB,
    };
    let request = CreateVmRequest {
        name: args.name.clone(),
        template: args.template.clone(),
        iso: args.iso.clone(),
        cores: args.cores,
        memory_mib: args.memory,
        disk_gib,
        ssh_keys: if args.ssh_keys.is_empty() {
            None
        } else {
            Some(
                args.ssh_keys
                    .iter()
                    .map(|path| read_public_key(path))
                    .collect::<anyhow::Result<_>>()?,
            )
        },
        guest_user: args.guest_user.clone(),
        node: args.node.clone(),
    };
    let created = client.create_vm(&request).await?;
    // The password exists only in this reply: show it before anything else can fail.
    if let Some(login) = &created.guest_login
        && !session.print.is_json()
    {
        show_guest_login(&created.vm.name, login);
    }
    if !args.wait.wait {
        return session.print.done(
            &format!(
                "creating {} (job {}); follow it with `porthole job show {} --wait`",
                created.vm.name, created.job.id, created.job.id
            ),
            &created,
        );
    }
    wait_for_job(client, &created.job).await?;
    let vm = client.vm(created.vm.id).await?;
    // In JSON, the VM as `vm show` prints it, plus the guest login.
    let mut json = serde_json::to_value(&vm)?;
    if let (Some(login), Some(object)) = (&created.guest_login, json.as_object_mut()) {
        object.insert("guest_login".into(), serde_json::to_value(login)?);
    }
    session
        .print
        .done(&format!("{} is {}", vm.name, vm.state), &json)
}

/// Shows a new guest's login on stderr, so stdout stays the one result line.
fn show_guest_login(vm: &str, login: &GuestLogin) {
    let keys = match login.ssh_keys {
        0 => "none; log in with the password on `porthole console`, or add keys to your \
              profile with `porthole ssh-key add`"
            .to_owned(),
        1 => "1 key accepted".to_owned(),
        n => format!("{n} keys accepted"),
    };
    eprintln!(
        "guest login for {vm}:\n  user:     {}\n  password: {}\n  ssh:      {keys}\n\
         The password is shown only now; porthole does not keep it.",
        login.user, login.password
    );
}

/// When `vm` expires, as a sentence.
fn expiry_line(vm: &Vm) -> String {
    match (vm.expiry_exempt, &vm.expires_at) {
        (true, _) => format!("{} is exempt from expiry", vm.name),
        (false, Some(at)) => format!("{} expires at {} UTC", vm.name, time(at)),
        (false, None) => format!("{} does not expire", vm.name),
    }
}

async fn action(session: &Session, args: &VmActionArgs, action: &str) -> anyhow::Result<()> {
    let client = &session.client;
    let vm = client.find_vm(&args.vm).await?;
    let job = client.vm_action(vm.id, action).await?.job;
    follow(session, job, args.wait.wait, &vm.name).await
}

/// Prints where a queued job can be followed, or waits for it and prints the VM's state.
async fn follow(session: &Session, job: Job, wait: bool, name: &str) -> anyhow::Result<()> {
    let client = &session.client;
    if !wait {
        return session.print.done(
            &format!("{} queued for {name} (job {})", job.kind, job.id),
            &job,
        );
    }
    let job = wait_for_job(client, &job).await?;
    match job.vm {
        Some(id) if job.kind != porthole_core::JobKind::DeleteVm => {
            let vm = client.vm(id).await?;
            session
                .print
                .done(&format!("{} is {}", vm.name, vm.state), &vm)
        }
        _ => session.print.done(name, &job),
    }
}

async fn resize(session: &Session, args: &ResizeArgs) -> anyhow::Result<()> {
    let client = &session.client;
    let vm = client.find_vm(&args.vm).await?;
    let request = UpdateVmRequest {
        cores: args.cores,
        memory_mib: args.memory,
        disk_gib: args.disk,
        ..Default::default()
    };
    let vm = client.update_vm(vm.id, &request).await?;
    session.print.done(
        &format!(
            "{}: {} cores, {} MiB, {} GiB",
            vm.name, vm.cores, vm.memory_mib, vm.disk_gib
        ),
        &vm,
    )
}
