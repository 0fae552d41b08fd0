//! VMs as the plane sees them: owner, node, recorded state and resources.
//!
//! A VM row changes state only in two ways: a job finishing (see [`crate::jobs`]), or the
//! reconciler recording what the hypervisor reports while no job holds the VM. Both are
//! conditional updates, so neither can overwrite the other.

use porthole_core::{
    BootOrder, IsoId, JobId, Resources, TemplateId, UserId, VmId, VmName, VmState,
};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::quotas::{QuotaRequest, admit_in};
use crate::{
    Millis, Store, StoreError, changed, count_column, enum_column, id_column, optional_id_column,
    to_db,
};

/// A VM as stored, with its owner's username.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmRecord {
    /// The VM's id.
    pub id: VmId,
    /// Its unique name.
    pub name: VmName,
    /// Who owns it.
    pub owner_id: UserId,
    /// The owner's username.
    pub owner: String,
    /// The node it runs on.
    pub node: String,
    /// Its recorded state.
    pub state: VmState,
    /// Cores, memory and disk.
    pub resources: Resources,
    /// The template it was cloned from, if any.
    pub template_id: Option<TemplateId>,
    /// The ISO it boots, if any.
    pub iso_id: Option<IsoId>,
    /// The template's name, if any.
    pub template_name: Option<String>,
    /// The ISO's name, if any.
    pub iso_name: Option<String>,
    /// The job acting on it now, if any.
    pub job_id: Option<JobId>,
    /// When it was created.
    pub created_at: Millis,
    /// When its row last changed.
    pub updated_at: Millis,
    /// When it expires, if it does.
    pub expires_at: Option<Millis>,
    /// Whether an admin exempted it from expiry.
    pub expiry_exempt: bool,
    /// The ISO in its CD-ROM drive besides its boot media, if any.
    pub cdrom_iso_id: Option<IsoId>,
    /// That ISO's name.
    pub cdrom_iso_name: Option<String>,
    /// What boots first, if chosen.
    pub boot_order: Option<BootOrder>,
}

macro_rules! vm_columns {
    () => {
        "vms.id, vms.name, vms.owner_id, users.username AS owner, vms.node, vms.state, \
         vms.cores, vms.memory_mib, vms.disk_gib, vms.template_id, vms.iso_id, vms.job_id, \
         vms.created_at, vms.updated_at, vms.expires_at, vms.expiry_exempt, \
         vms.cdrom_iso_id, vms.boot_order, templates.name AS template_name, \
         isos.name AS iso_name, cdroms.name AS cdrom_iso_name \
         FROM vms JOIN users ON users.id = vms.owner_id \
         LEFT JOIN templates ON templates.id = vms.template_id \
         LEFT JOIN isos ON isos.id = vms.iso_id \
         LEFT JOIN isos AS cdroms ON cdroms.id = vms.cdrom_iso_id"
    };
}

impl VmRecord {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let name: String = row.try_get("name")?;
        let cores = count_column(row, "cores")?;
        Ok(Self {
            id: id_column(row, "id")?,
            name: VmName::parse(&name)?,
            owner_id: id_column(row, "owner_id")?,
            owner: row.try_get("owner")?,
            node: row.try_get("node")?,
            state: enum_column(row, "state", VmState::parse)?,
            resources: Resources {
                cores: u32::try_from(cores)
                    .map_err(|_| StoreError::Corrupt(format!("cores = {cores}")))?,
                memory_mib: count_column(row, "memory_mib")?,
                disk_gib: count_column(row, "disk_gib")?,
            },
            template_id: optional_id_column(row, "template_id")?,
            iso_id: optional_id_column(row, "iso_id")?,
            template_name: row.try_get("template_name")?,
            iso_name: row.try_get("iso_name")?,
            job_id: optional_id_column(row, "job_id")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            expires_at: row.try_get("expires_at")?,
            expiry_exempt: row.try_get::<i64, _>("expiry_exempt")? != 0,
            cdrom_iso_id: optional_id_column(row, "cdrom_iso_id")?,
            cdrom_iso_name: row.try_get("cdrom_iso_name")?,
            boot_order: row
                .try_get::<Option<String>, _>("boot_order")?
                .map(|text| match text.as_str() {
                    "cdrom" => Ok(BootOrder::Cdrom),
                    "disk" => Ok(BootOrder::Disk),
                    other => Err(StoreError::Corrupt(format!("boot_order = {other:?}"))),
                })
                .transpose()?,
        })
    }
}

impl Store {
    /// Every VM, or only `owner`'s, by name.
    pub async fn vms(&self, owner: Option<UserId>) -> Result<Vec<VmRecord>, StoreError> {
        let rows = match owner {
            Some(owner) => {
                sqlx::query(concat!(
                    "SELECT ",
                    vm_columns!(),
                    " WHERE vms.owner_id = $1 ORDER BY vms.name"
                ))
                .bind(owner.to_string())
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(concat!("SELECT ", vm_columns!(), " ORDER BY vms.name"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(VmRecord::from_row).collect()
    }

    /// The VM with `id`, if any.
    pub async fn vm(&self, id: VmId) -> Result<Option<VmRecord>, StoreError> {
        sqlx::query(concat!("SELECT ", vm_columns!(), " WHERE vms.id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(VmRecord::from_row)
            .transpose()
    }

    /// The VM called `name`, if any.
    pub async fn vm_by_name(&self, name: &str) -> Result<Option<VmRecord>, StoreError> {
        sqlx::query(concat!("SELECT ", vm_columns!(), " WHERE vms.name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(VmRecord::from_row)
            .transpose()
    }

    /// Records what the hypervisor reports, unless a job holds the VM or its state moved on
    /// since `seen`. Returns whether the row changed.
    pub async fn record_vm_state(
        &self,
        id: VmId,
        seen: VmState,
        now_state: VmState,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE vms SET state = $1, updated_at = $2 \
             WHERE id = $3 AND state = $4 AND job_id IS NULL",
        )
        .bind(now_state.as_str())
        .bind(now)
        .bind(id.to_string())
        .bind(seen.as_str())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Sets when VM `id` expires. Renewing a deleting VM is refused as stale.
    pub async fn set_vm_expiry(
        &self,
        id: VmId,
        expires_at: Millis,
        now: Millis,
    ) -> Result<(), StoreError> {
        let result = sqlx::query(
            "UPDATE vms SET expires_at = $1, updated_at = $2 \
             WHERE id = $3 AND state NOT IN ('deleting')",
        )
        .bind(expires_at)
        .bind(now)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        changed(&result, StoreError::Stale("VM"))
    }

    /// Sets the ISO in VM `id`'s CD-ROM drive and what boots first, if no job holds it.
    pub async fn set_vm_media(
        &self,
        id: VmId,
        cdrom: Option<IsoId>,
        boot_order: Option<BootOrder>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let result = sqlx::query(
            "UPDATE vms SET cdrom_iso_id = $1, boot_order = $2, updated_at = $3 \
             WHERE id = $4 AND job_id IS NULL",
        )
        .bind(cdrom.map(|i| i.to_string()))
        .bind(boot_order.map(|o| match o {
            BootOrder::Disk => "disk",
            BootOrder::Cdrom => "cdrom",
        }))
        .bind(now)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        changed(&result, StoreError::Stale("VM"))
    }

    /// Exempts VM `id` from expiry, or makes it expire again.
    pub async fn set_vm_exempt(
        &self,
        id: VmId,
        exempt: bool,
        now: Millis,
    ) -> Result<(), StoreError> {
        let result =
            sqlx::query("UPDATE vms SET expiry_exempt = $1, updated_at = $2 WHERE id = $3")
                .bind(i64::from(exempt))
                .bind(now)
                .bind(id.to_string())
                .execute(&self.pool)
                .await?;
        changed(&result, StoreError::NotFound("VM"))
    }

    /// Changes a VM's resources, if no job holds it, its state is still `seen`, and `quota`
    /// admits what the change adds.
    pub async fn update_vm_resources(
        &self,
        id: VmId,
        seen: VmState,
        resources: Resources,
        now: Millis,
        quota: Option<&QuotaRequest>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        if let Some(quota) = quota {
            admit_in(&mut tx, quota).await?;
        }
        let result = sqlx::query(
            "UPDATE vms SET cores = $1, memory_mib = $2, disk_gib = $3, updated_at = $4 \
             WHERE id = $5 AND state = $6 AND job_id IS NULL",
        )
        .bind(i64::from(resources.cores))
        .bind(to_db(resources.memory_mib))
        .bind(to_db(resources.disk_gib))
        .bind(now)
        .bind(id.to_string())
        .bind(seen.as_str())
        .execute(&mut *tx)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::Stale("VM"));
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Binds a [`VmRecord`] for insertion; used by the job module's transactions.
pub(crate) async fn insert_vm(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    vm: &VmRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO vms (id, name, owner_id, node, state, cores, memory_mib, disk_gib, \
         template_id, iso_id, job_id, created_at, updated_at, expires_at, expiry_exempt) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(vm.id.to_string())
    .bind(vm.name.as_str())
    .bind(vm.owner_id.to_string())
    .bind(&vm.node)
    .bind(vm.state.as_str())
    .bind(i64::from(vm.resources.cores))
    .bind(to_db(vm.resources.memory_mib))
    .bind(to_db(vm.resources.disk_gib))
    .bind(vm.template_id.map(|t| t.to_string()))
    .bind(vm.iso_id.map(|i| i.to_string()))
    .bind(vm.job_id.map(|j| j.to_string()))
    .bind(vm.created_at)
    .bind(vm.updated_at)
    .bind(vm.expires_at)
    .bind(i64::from(vm.expiry_exempt))
    .execute(&mut **tx)
    .await
    .map_err(crate::error::taken_as("name"))?;
    Ok(())
}
