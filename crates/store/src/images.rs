//! Template and ISO images. The rows describe files that the plane keeps under its data
//! directory; the rows are written only once a file is complete and verified.

use porthole_core::driver::DiskFormat;
use porthole_core::{IsoId, TemplateId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::{in_use_as, taken_as};
use crate::{Millis, Store, StoreError, changed, count_column, enum_column, id_column, to_db};

/// A template as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateRecord {
    /// The template's id; also its directory name.
    pub id: TemplateId,
    /// Its unique name, e.g. `demo`.
    pub name: String,
    /// The base disk's format.
    pub disk_format: DiskFormat,
    /// The size the guest sees, in bytes.
    pub virtual_size: u64,
    /// The base disk's size on the host, in bytes.
    pub file_size: u64,
    /// Hex SHA-256 of the base disk.
    pub sha256: String,
    /// Hex SHA-256 of the kernel, if the template boots one directly.
    pub kernel_sha256: Option<String>,
    /// Hex SHA-256 of the initrd, if any.
    pub initrd_sha256: Option<String>,
    /// The kernel command line, if any.
    pub cmdline: Option<String>,
    /// When it was imported.
    pub created_at: Millis,
    /// Whether members may use it.
    pub approved: bool,
    /// For a template a node keeps itself: the node, and its name for the template (a
    /// Proxmox VMID). `None` for an image the plane keeps.
    pub on_node: Option<NodeTemplate>,
}

/// A template that lives on one node, named in that node's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTemplate {
    /// The node.
    pub node: String,
    /// The node's name for it, e.g. a Proxmox VMID.
    pub reference: String,
}

macro_rules! template_columns {
    () => {
        "id, name, disk_format, virtual_size, file_size, sha256, kernel_sha256, initrd_sha256, \
         cmdline, created_at, approved, node, node_reference"
    };
}

impl TemplateRecord {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: id_column(row, "id")?,
            name: row.try_get("name")?,
            disk_format: enum_column(row, "disk_format", DiskFormat::parse)?,
            virtual_size: count_column(row, "virtual_size")?,
            file_size: count_column(row, "file_size")?,
            sha256: row.try_get("sha256")?,
            kernel_sha256: row.try_get("kernel_sha256")?,
            initrd_sha256: row.try_get("initrd_sha256")?,
            cmdline: row.try_get("cmdline")?,
            created_at: row.try_get("created_at")?,
            approved: row.try_get::<i64, _>("approved")? != 0,
            on_node: match (row.try_get("node")?, row.try_get("node_reference")?) {
                (Some(node), Some(reference)) => Some(NodeTemplate { node, reference }),
                _ => None,
            },
        })
    }
}

/// An installer ISO as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsoRecord {
    /// The ISO's id; also its file name.
    pub id: IsoId,
    /// Its unique name.
    pub name: String,
    /// Its size in bytes.
    pub file_size: u64,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// When it was imported.
    pub created_at: Millis,
    /// Whether members may use it.
    pub approved: bool,
}

impl IsoRecord {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: id_column(row, "id")?,
            name: row.try_get("name")?,
            file_size: count_column(row, "file_size")?,
            sha256: row.try_get("sha256")?,
            created_at: row.try_get("created_at")?,
            approved: row.try_get::<i64, _>("approved")? != 0,
        })
    }
}

impl Store {
    /// Adds a template. A name that exists already is [`StoreError::Taken`].
    pub async fn insert_template(&self, t: &TemplateRecord) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO templates (",
            template_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(t.id.to_string())
        .bind(&t.name)
        .bind(t.disk_format.as_str())
        .bind(to_db(t.virtual_size))
        .bind(to_db(t.file_size))
        .bind(&t.sha256)
        .bind(&t.kernel_sha256)
        .bind(&t.initrd_sha256)
        .bind(&t.cmdline)
        .bind(t.created_at)
        .bind(i64::from(t.approved))
        .bind(t.on_node.as_ref().map(|n| n.node.clone()))
        .bind(t.on_node.as_ref().map(|n| n.reference.clone()))
        .execute(&self.pool)
        .await
        .map_err(taken_as("name"))?;
        Ok(())
    }

    /// Every template, by name.
    pub async fn templates(&self) -> Result<Vec<TemplateRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            template_columns!(),
            " FROM templates ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(TemplateRecord::from_row)
        .collect()
    }

    /// The template called `name`, if any.
    pub async fn template_by_name(&self, name: &str) -> Result<Option<TemplateRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            template_columns!(),
            " FROM templates WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(TemplateRecord::from_row)
        .transpose()
    }

    /// The template with `id`, if any.
    pub async fn template(&self, id: TemplateId) -> Result<Option<TemplateRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            template_columns!(),
            " FROM templates WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(TemplateRecord::from_row)
        .transpose()
    }

    /// Lets members use template `id`, or stops them.
    pub async fn set_template_approved(
        &self,
        id: TemplateId,
        approved: bool,
    ) -> Result<(), StoreError> {
        set_approved(
            self,
            "UPDATE templates SET approved = $1 WHERE id = $2",
            id.to_string(),
            approved,
        )
        .await
    }

    /// Lets members use ISO `id`, or stops them.
    pub async fn set_iso_approved(&self, id: IsoId, approved: bool) -> Result<(), StoreError> {
        set_approved(
            self,
            "UPDATE isos SET approved = $1 WHERE id = $2",
            id.to_string(),
            approved,
        )
        .await
    }

    /// Removes a template no VM uses; one that is used is [`StoreError::InUse`].
    pub async fn delete_template(&self, id: TemplateId) -> Result<(), StoreError> {
        let result = sqlx::query("DELETE FROM templates WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(in_use_as("template"))?;
        changed(&result, StoreError::NotFound("template"))
    }

    /// Adds an ISO. A name that exists already is [`StoreError::Taken`].
    pub async fn insert_iso(&self, iso: &IsoRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO isos (id, name, file_size, sha256, created_at, approved) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(iso.id.to_string())
        .bind(&iso.name)
        .bind(to_db(iso.file_size))
        .bind(&iso.sha256)
        .bind(iso.created_at)
        .bind(i64::from(iso.approved))
        .execute(&self.pool)
        .await
        .map_err(taken_as("name"))?;
        Ok(())
    }

    /// Every ISO, by name.
    pub async fn isos(&self) -> Result<Vec<IsoRecord>, StoreError> {
        sqlx::query(
            "SELECT id, name, file_size, sha256, created_at, approved FROM isos ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(IsoRecord::from_row)
        .collect()
    }

    /// The ISO called `name`, if any.
    pub async fn iso_by_name(&self, name: &str) -> Result<Option<IsoRecord>, StoreError> {
        sqlx::query(
            "SELECT id, name, file_size, sha256, created_at, approved FROM isos WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(IsoRecord::from_row)
        .transpose()
    }

    /// The ISO with `id`, if any.
    pub async fn iso(&self, id: IsoId) -> Result<Option<IsoRecord>, StoreError> {
        sqlx::query(
            "SELECT id, name, file_size, sha256, created_at, approved FROM isos WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(IsoRecord::from_row)
        .transpose()
    }

    /// Removes an ISO no VM uses; one that is used is [`StoreError::InUse`].
    pub async fn delete_iso(&self, id: IsoId) -> Result<(), StoreError> {
        let result = sqlx::query("DELETE FROM isos WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(in_use_as("ISO"))?;
        changed(&result, StoreError::NotFound("ISO"))
    }
}

async fn set_approved(
    store: &Store,
    query: &'static str,
    id: String,
    approved: bool,
) -> Result<(), StoreError> {
    let result = sqlx::query(query)
        .bind(i64::from(approved))
        .bind(id)
        .execute(&store.pool)
        .await?;
    changed(&result, StoreError::NotFound("image"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::store;

    pub(crate) fn template(name: &str) -> TemplateRecord {
        TemplateRecord {
            id: TemplateId::random(),
            name: name.into(),
            disk_format: DiskFormat::Qcow2,
            virtual_size: 64 << 20,
            file_size: 1 << 20,
            sha256: "00".repeat(32),
            kernel_sha256: Some("11".repeat(32)),
            initrd_sha256: None,
            cmdline: Some("console=ttyS0".into()),
            created_at: 5,
            approved: false,
            on_node: None,
        }
    }

    #[tokio::test]
    async fn templates_round_trip_and_names_are_unique() {
        let (store, _dir) = store().await;
        let demo = template("demo");
        store.insert_template(&demo).await.unwrap();
        assert_eq!(
            store.template_by_name("demo").await.unwrap(),
            Some(demo.clone())
        );
        assert_eq!(store.template(demo.id).await.unwrap(), Some(demo.clone()));
        assert!(matches!(
            store.insert_template(&template("demo")).await,
            Err(StoreError::Taken { field: "name" })
        ));
        store.delete_template(demo.id).await.unwrap();
        assert!(store.templates().await.unwrap().is_empty());
        assert!(matches!(
            store.delete_template(demo.id).await,
            Err(StoreError::NotFound(_))
        ));
    }
}
