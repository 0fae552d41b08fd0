#!/usr/bin/env bash
# Builds porthole's demo/test guest from Debian's cloud kernel and busybox-static.
#
# Output (in $1, default target/guest):
#   vmlinuz      the kernel, booted directly by QEMU
#   initrd.img   a busybox initramfs whose init prints the ready marker on serial and VGA,
#                answers ACPI power-button presses, keeps a shell on ttyS0 and tty1,
#                applies console sizes porthole sends over virtio-serial, and applies a
#                cloud-init NoCloud seed (hostname, user, password hash, SSH keys) if the
#                VM has one (bin/porthole-cloud-init)
#   disk.qcow2   a small ext4 data disk the guest mounts at /data when present
#   cmdline      the kernel command line the template uses
#
# Packages are fetched with `apt-get download` and unpacked locally, so nothing is installed
# into the host's /boot. Re-running is cheap: the output is rebuilt only when an input changed.
set -euo pipefail

out=$(realpath -m "${1:-target/guest}")
here=$(cd "$(dirname "$0")" && pwd)
work="$out/.work"
mkdir -p "$out" "$work/debs"

kernel_pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kernel_pkg" ] || { echo "build-guest: cannot resolve linux-image-cloud-amd64 (run apt-get update)" >&2; exit 1; }
stamp="$kernel_pkg $(apt-cache policy busybox-static | awk '/Candidate/ {print $2}') $(find "$here" -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] && [ -f "$out/disk.qcow2" ]; then
    echo "build-guest: $out is up to date"
    exit 0
fi

(cd "$work/debs" && rm -f ./*.deb && apt-get download -q "$kernel_pkg" busybox-static >/dev/null)
rm -rf "$work/kernel" "$work/busybox" "$work/root"
dpkg-deb -x "$work"/debs/linux-image-*.deb "$work/kernel"
dpkg-deb -x "$work"/debs/busybox-static_*.deb "$work/busybox"
kver=${kernel_pkg#linux-image-}

root="$work/root"
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,data,run,root,lib/modules}
cp "$work/busybox/bin/busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
ln -sf ../bin/busybox "$root/sbin/init"
ln -sf bin/busybox "$root/init"

# Only the modules the guest needs, flat, in load order (dependencies first).
mods="$work/kernel/lib/modules/$kver/kernel"
for m in drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_legacy_dev \
         drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci drivers/block/virtio_blk \
         drivers/cdrom/cdrom fs/isofs/isofs drivers/scsi/scsi_common drivers/scsi/scsi_mod \
         drivers/scsi/sr_mod drivers/ata/libata drivers/ata/ata_piix drivers/acpi/button \
         drivers/input/evdev drivers/char/virtio_console; do
    cp "$mods/$m.ko" "$root/lib/modules/"
    basename "$m" >> "$root/lib/modules/load-order"
done

cp -a "$here/rootfs/." "$root/"
chmod 0755 "$root/etc/rc" "$root/etc/acpi/PWRF/00000080" "$root/bin/porthole-console-agent" \
    "$root/bin/porthole-cloud-init"
(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -9 > "$out/initrd.img.tmp"
cp "$work/kernel/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"

# The data disk: ext4 with a marker file, so a test can see the guest really reads its disk.
rm -f "$work/disk.raw"
truncate -s 64M "$work/disk.raw"
mkdir -p "$work/diskroot"
echo "porthole demo data disk" > "$work/diskroot/README"
mkfs.ext4 -q -F -L porthole-data -d "$work/diskroot" "$work/disk.raw"
qemu-img convert -q -f raw -O qcow2 "$work/disk.raw" "$out/disk.qcow2.tmp"
rm -f "$work/disk.raw"

echo "console=ttyS0 console=tty0 quiet panic=-1" > "$out/cmdline"
mv "$out/initrd.img.tmp" "$out/initrd.img"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/disk.qcow2.tmp" "$out/disk.qcow2"
echo "$stamp" > "$out/stamp"
echo "build-guest: built $out ($kver)"
