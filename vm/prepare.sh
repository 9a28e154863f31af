#!/bin/bash
# Builds what the kernel tests boot: Debian's current linux-image-amd64 kernel
# (downloaded and unpacked, never installed on the host) and a busybox
# initramfs with aoe.ko, the virtio NIC and ext4 modules. Idempotent; the
# result is cached in $AOE_VM_CACHE (default /var/tmp/aoe-vm).
# Prints the path of the env file describing the build.
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
cache=${AOE_VM_CACHE:-/var/tmp/aoe-vm}
modules="virtio_pci virtio_net aoe ext4 nbd 9pnet_virtio 9p overlay"
# Guest-only packages for the host-root mode, unpacked (never installed on the host).
layer_debs="udev fdisk"
export DEBIAN_FRONTEND=noninteractive

missing=()
for p in qemu-system-x86 busybox-static kmod cpio; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
if [ -z "$kpkg" ]; then
  apt-get update -qq
  kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
fi
[ -n "$kpkg" ] || { echo "prepare: cannot resolve linux-image-amd64" >&2; exit 1; }
key=$( { echo "$kpkg $modules $layer_debs"; cat "$here/prepare.sh" "$here/guest/init"; dpkg-query -W busybox-static; } | sha256sum | cut -c1-16)
out=$cache/build-$key
if [ -f "$out/env" ]; then echo "$out/env"; exit 0; fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/tmp.XXXXXX")
chmod 777 "$work"
trap 'rm -rf "$work"' EXIT
( cd "$work" && apt-get download -qq "$kpkg" ) || { apt-get update -qq; ( cd "$work" && apt-get download -qq "$kpkg" ); }
dpkg -x "$work"/*.deb "$work/kx"
kver=$(ls "$work/kx/lib/modules")
depmod -b "$work/kx" "$kver"

root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,mnt,etc,lib/modules/"$kver"}
cp /bin/busybox "$root/bin/busybox"
/bin/busybox --list-full | while read -r applet; do
  [ "$applet" = bin/busybox ] && continue
  mkdir -p "$root/$(dirname "$applet")"
  ln -sf /bin/busybox "$root/$applet"
done
for m in $modules; do
  modprobe -d "$work/kx" -S "$kver" --show-depends "$m" | awk '$1=="insmod"{print $2}'
done | sort -u | while read -r ko; do
  rel=${ko#"$work/kx/"}
  mkdir -p "$root/$(dirname "$rel")"
  cp "$ko" "$root/$rel"
done
cp "$work/kx/lib/modules/$kver"/modules.order "$work/kx/lib/modules/$kver"/modules.builtin* "$root/lib/modules/$kver/"
depmod -b "$root" "$kver"
cp "$here/guest/init" "$root/init"
chmod 755 "$root/init"
mkdir -p "$out"
( cd "$root" && find . -print0 | cpio --null -o -H newc --quiet ) | gzip -1 > "$out/initrd.cpio.gz"
cp "$work/kx/boot/vmlinuz-$kver" "$out/vmlinuz"
# The guest-only layer: udev and fdisk, with merged-/usr trees moved under usr/
# (a real lib/ in an upper overlay layer would hide the host's /lib symlink).
mkdir -p "$work/ldeb" "$work/layer"
chmod 777 "$work/ldeb"
( cd "$work/ldeb" && apt-get download -qq $layer_debs )
for deb in "$work"/ldeb/*.deb; do dpkg -x "$deb" "$work/layer"; done
for d in bin sbin lib lib64; do
  if [ -L "/$d" ] && [ -d "$work/layer/$d" ] && [ ! -L "$work/layer/$d" ]; then
    mkdir -p "$work/layer/usr/$d"; cp -a "$work/layer/$d/." "$work/layer/usr/$d/"; rm -rf "${work:?}/layer/$d"
  fi
done
mkdir -p "$work/layer/etc/udev/rules.d"
mv "$work/layer" "$out/layer"
cat > "$out/env" <<EOT
AOE_VM_KVER=$kver
AOE_VM_KERNEL=$out/vmlinuz
AOE_VM_INITRD=$out/initrd.cpio.gz
AOE_VM_LAYER=$out/layer
EOT
echo "$out/env"
