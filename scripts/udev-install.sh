#!/bin/sh
# Installs the aoe NBD bridge's udev rules, as the kernel doc's
# udev-install.sh installs 60-aoe.rules: into the rules directory udev reads
# (UDEV_RULES_DIR overrides), then asks a running udevd to reload.
#   scripts/udev-install.sh              install
#   scripts/udev-install.sh --uninstall  remove them again
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
rules="60-aoe-nbd.rules"
dir=${UDEV_RULES_DIR:-}
if test -z "$dir"; then
	# The kernel's script reads udev_rules from udev.conf; current udev uses /etc/udev/rules.d.
	conf=/etc/udev/udev.conf
	if test -r "$conf"; then
		dir=$(sed -n 's/^[[:space:]]*udev_rules[[:space:]]*=[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' "$conf" | tail -n 1)
	fi
	dir=${dir:-/etc/udev/rules.d}
fi

case "${1:-}" in
--uninstall)
	rm -f "$dir/$rules"
	echo "removed $dir/$rules"
	;;
"")
	mkdir -p "$dir"
	cp "$here/udev/$rules" "$dir/$rules"
	chmod 0644 "$dir/$rules"
	echo "installed $dir/$rules"
	;;
*)
	echo "usage: $0 [--uninstall]" >&2
	exit 1
	;;
esac
if command -v udevadm >/dev/null 2>&1 && udevadm control --reload 2>/dev/null; then
	:
fi
