-- Members may build VMs only from templates and ISOs an admin approved.
ALTER TABLE templates ADD COLUMN approved BIGINT NOT NULL DEFAULT 0;
ALTER TABLE isos ADD COLUMN approved BIGINT NOT NULL DEFAULT 0;

-- An ISO in a VM's CD-ROM drive (for a template VM: besides its disk), and which boots
-- first. NULL boot_order: the media's default (an installer ISO first, else the disk).
ALTER TABLE vms ADD COLUMN cdrom_iso_id TEXT REFERENCES isos (id);
ALTER TABLE vms ADD COLUMN boot_order TEXT CHECK (boot_order IN ('disk', 'cdrom'));
