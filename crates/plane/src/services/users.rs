//! Accounts, groups and limits, as admins manage them. Every change is audited.

use porthole_api::{
    CreateGroupRequest, CreateUserRequest, Group, SetLimitsRequest, UpdateUserRequest, User,
};
use porthole_core::{GroupId, LimitOverrides};
use porthole_store::quotas::GroupRecord;
use porthole_store::users::UserRecord;

use crate::app::App;
use crate::error::ApiError;
use crate::services::audit::{self, Target};
use crate::services::auth::{self, user_view, validate_username};
use crate::services::caller::Caller;

/// The user called `username`, or 404.
pub async fn find_user(app: &App, username: &str) -> Result<UserRecord, ApiError> {
    app.store
        .user_by_name(username)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user called {username:?}")))
}

/// The group called `name`, or 404.
async fn find_group(app: &App, name: &str) -> Result<GroupRecord, ApiError> {
    app.store
        .group_by_name(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no group called {name:?}")))
}

/// Creates an account (admins), and records it in the audit log.
pub async fn create(
    app: &App,
    caller: &Caller,
    request: CreateUserRequest,
) -> Result<User, ApiError> {
    caller.require_admin()?;
    let name = request.username.clone();
    let role = request.role;
    let result = auth::create_user(app, request).await;
    let target = result.as_ref().map_or(Target::named("user", name), |u| {
        Target::new("user", u.id, &u.username)
    });
    audit::recorded(
        app,
        caller.into(),
        "user.create",
        Some(target),
        Some(format!("role={}", role.as_str())),
        result,
    )
    .await
}

/// Every user with limits and usage (admins).
pub async fn list(app: &App, caller: &Caller) -> Result<Vec<User>, ApiError> {
    caller.require_admin()?;
    let mut users = Vec::new();
    for user in app.store.users().await? {
        users.push(user_view(app, &user).await?);
    }
    Ok(users)
}

/// One user (admins, or the user themself).
pub async fn show(app: &App, caller: &Caller, username: &str) -> Result<User, ApiError> {
    if caller.user.username != username {
        caller.require_admin()?;
    }
    user_view(app, &find_user(app, username).await?).await
}

/// Checks limits from a request: each part, if given, at most what one VM could ever need
/// times a thousand, so a typo cannot pass as a limit.
fn overrides(request: &SetLimitsRequest) -> Result<LimitOverrides, ApiError> {
    let check = |field: &'static str, value: Option<u64>, max: u64| match value {
        Some(v) if v > max => Err(ApiError::invalid(
            field,
            format!("must be at most {max}, got {v}; leave it out (or null) to inherit"),
        )),
        _ => Ok(value),
    };
    Ok(LimitOverrides {
        cores: check("cores", request.cores, 128_000)?,
        memory_mib: check("memory_mib", request.memory_mib, 1 << 30)?,
        disk_gib: check("disk_gib", request.disk_gib, 64 << 20)?,
    })
}

fn describe(limits: &LimitOverrides) -> String {
    let part = |v: Option<u64>| v.map_or("inherit".to_owned(), |v| v.to_string());
    format!(
        "cores={} memory_mib={} disk_gib={}",
        part(limits.cores),
        part(limits.memory_mib),
        part(limits.disk_gib)
    )
}

/// Sets a user's own limits (admins).
pub async fn set_user_limits(
    app: &App,
    caller: &Caller,
    username: &str,
    request: SetLimitsRequest,
) -> Result<User, ApiError> {
    caller.require_admin()?;
    let user = find_user(app, username).await?;
    let limits = overrides(&request)?;
    let result = app.store.set_user_limits(user.id, limits).await;
    let target = Target::new("user", user.id, &user.username);
    audit::recorded(
        app,
        caller.into(),
        "user.limits",
        Some(target),
        Some(describe(&limits)),
        result,
    )
    .await?;
    show(app, caller, username).await
}

/// Changes a user's role, email or password, or lifts a lockout (admins).
pub async fn update(
    app: &App,
    caller: &Caller,
    username: &str,
    request: UpdateUserRequest,
) -> Result<User, ApiError> {
    caller.require_admin()?;
    let user = find_user(app, username).await?;
    let email = match request.email.as_deref() {
        None => None,
        Some("") => Some(None),
        Some(email) => {
            auth::validate_email(email)?;
            Some(Some(email.to_owned()))
        }
    };
    if let Some(password) = &request.password {
        auth::validate_password(password)?;
    }
    if request
        .role
        .is_some_and(|r| r != porthole_core::Role::Admin)
        && user.id == caller.user.id
    {
        return Err(ApiError::invalid(
            "role",
            "you cannot take the admin role from yourself; ask another admin",
        ));
    }
    let password_hash = match request.password {
        Some(password) => Some(
            tokio::task::spawn_blocking(move || auth::hash_password(&password))
                .await
                .map_err(ApiError::internal)??,
        ),
        None => None,
    };
    let result = app
        .store
        .update_user(
            user.id,
            request.role,
            email.clone(),
            password_hash.as_deref(),
            request.unlock,
        )
        .await;
    let mut changed = Vec::new();
    if let Some(role) = request.role {
        changed.push(format!("role={}", role.as_str()));
    }
    if email.is_some() {
        changed.push("email".to_owned());
    }
    if password_hash.is_some() {
        changed.push("password".to_owned());
    }
    if request.unlock {
        changed.push("unlocked".to_owned());
    }
    let target = Target::new("user", user.id, &user.username);
    audit::recorded(
        app,
        caller.into(),
        "user.update",
        Some(target),
        Some(changed.join(" ")),
        result,
    )
    .await?;
    show(app, caller, username).await
}

fn group_to_wire(group: &GroupRecord) -> Group {
    Group {
        id: group.id,
        name: group.name.clone(),
        limits: group.limits,
        members: group.members.clone(),
    }
}

/// Every group (admins).
pub async fn groups(app: &App, caller: &Caller) -> Result<Vec<Group>, ApiError> {
    caller.require_admin()?;
    Ok(app
        .store
        .groups()
        .await?
        .iter()
        .map(group_to_wire)
        .collect())
}

/// Makes a group (admins).
pub async fn create_group(
    app: &App,
    caller: &Caller,
    request: CreateGroupRequest,
) -> Result<Group, ApiError> {
    caller.require_admin()?;
    validate_username(&request.name).map_err(|_| {
        ApiError::invalid(
            "name",
            "must be 1 to 64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit",
        )
    })?;
    let group = GroupRecord {
        id: GroupId::random(),
        name: request.name,
        limits: LimitOverrides::default(),
        members: Vec::new(),
        created_at: app.clock.now_millis(),
    };
    let result = app.store.insert_group(&group).await;
    let target = Target::new("group", group.id, &group.name);
    audit::recorded(
        app,
        caller.into(),
        "group.create",
        Some(target),
        None,
        result,
    )
    .await?;
    Ok(group_to_wire(&group))
}

/// Removes a group (admins).
pub async fn delete_group(app: &App, caller: &Caller, name: &str) -> Result<(), ApiError> {
    caller.require_admin()?;
    let group = find_group(app, name).await?;
    let result = app.store.delete_group(group.id).await;
    let target = Target::new("group", group.id, &group.name);
    audit::recorded(
        app,
        caller.into(),
        "group.delete",
        Some(target),
        None,
        result,
    )
    .await
}

/// Sets a group's limits (admins).
pub async fn set_group_limits(
    app: &App,
    caller: &Caller,
    name: &str,
    request: SetLimitsRequest,
) -> Result<Group, ApiError> {
    caller.require_admin()?;
    let group = find_group(app, name).await?;
    let limits = overrides(&request)?;
    let result = app.store.set_group_limits(group.id, limits).await;
    let target = Target::new("group", group.id, &group.name);
    audit::recorded(
        app,
        caller.into(),
        "group.limits",
        Some(target),
        Some(describe(&limits)),
        result,
    )
    .await?;
    Ok(group_to_wire(&find_group(app, name).await?))
}

/// Adds or removes a member (admins).
pub async fn set_member(
    app: &App,
    caller: &Caller,
    name: &str,
    username: &str,
    member: bool,
) -> Result<Group, ApiError> {
    caller.require_admin()?;
    let group = find_group(app, name).await?;
    let user = find_user(app, username).await?;
    let result = if member {
        app.store
            .add_group_member(group.id, user.id)
            .await
            .map_err(ApiError::from)
    } else {
        match app.store.remove_group_member(group.id, user.id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ApiError::NotFound(format!(
                "{username} is not a member of {name}"
            ))),
            Err(e) => Err(e.into()),
        }
    };
    let action = if member {
        "group.add_member"
    } else {
        "group.remove_member"
    };
    let target = Target::new("group", group.id, &group.name);
    audit::recorded(
        app,
        caller.into(),
        action,
        Some(target),
        Some(username.to_owned()),
        result,
    )
    .await?;
    Ok(group_to_wire(&find_group(app, name).await?))
}
