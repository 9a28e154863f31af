#!/bin/sh
# Installs aoe the way a storage daemon is installed: the command, the
# systemd units, the man pages, the udev rules and example config files, and
# records every file and directory it created in a manifest, so that
# --uninstall removes exactly that (and nothing an administrator added).
#
#   scripts/install.sh [--prefix DIR] [--root DIR] [--unitdir DIR]
#   scripts/install.sh [--prefix DIR] [--root DIR] --uninstall
#
# --prefix  where the command, units and man pages live (default /usr/local)
# --root    a staging root every path is placed under (default /, as DESTDIR)
# --unitdir the systemd unit directory (default PREFIX/lib/systemd/system)
#
# The command is dist/aoe (deno compile) when it was built, otherwise a
# launcher that runs this checkout (scripts/aoe). Existing files that the
# manifest does not list are never overwritten.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
prefix=/usr/local
root=
unitdir=
uninstall=no
usage() {
	echo "usage: scripts/install.sh [--prefix DIR] [--root DIR] [--unitdir DIR] [--uninstall]" >&2
	exit 1
}
while [ $# -gt 0 ]; do
	case "$1" in
	--prefix) [ $# -ge 2 ] || usage; prefix=$2; shift 2 ;;
	--prefix=*) prefix=${1#*=}; shift ;;
	--root) [ $# -ge 2 ] || usage; root=$2; shift 2 ;;
	--root=*) root=${1#*=}; shift ;;
	--unitdir) [ $# -ge 2 ] || usage; unitdir=$2; shift 2 ;;
	--unitdir=*) unitdir=${1#*=}; shift ;;
	--uninstall) uninstall=yes; shift ;;
	-h | --help) sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) usage ;;
	esac
done
case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be absolute" >&2; exit 1 ;; esac
root=${root%/}
unitdir=${unitdir:-$prefix/lib/systemd/system}
manifest=$prefix/share/aoe/install-manifest

if [ "$uninstall" = yes ]; then
	if [ ! -f "$root$manifest" ]; then
		echo "install.sh: nothing to uninstall ($root$manifest not found)" >&2
		exit 1
	fi
	# Files first, then the directories this install created, deepest first.
	grep '^f ' "$root$manifest" | cut -c3- | while IFS= read -r path; do
		rm -f "$root$path"
		echo "removed $root$path"
	done
	created=$(grep '^d ' "$root$manifest.dirs" 2>/dev/null | cut -c3- | sort -r || true)
	rm -f "$root$manifest" "$root$manifest.dirs"
	printf '%s\n' "$created" | while IFS= read -r path; do
		[ -n "$path" ] || continue
		rmdir "$root$path" 2>/dev/null && echo "removed $root$path/" || true
	done
	if [ -z "$root" ] && command -v systemctl >/dev/null 2>&1; then systemctl daemon-reload 2>/dev/null || true; fi
	exit 0
fi

previous=
[ -f "$root$manifest" ] && previous=$(cut -c3- "$root$manifest")
files=$(mktemp)
dirs=$(mktemp)
trap 'rm -f "$files" "$dirs"' EXIT
[ -f "$root$manifest.dirs" ] && cat "$root$manifest.dirs" >"$dirs"

# Creates a directory (and its parents), remembering the ones that did not exist.
directory() {
	missing=
	d=$1
	while [ ! -d "$root$d" ]; do
		missing="$d $missing"
		d=$(dirname "$d")
	done
	for d in $missing; do
		mkdir -m 0755 "$root$d"
		echo "d $d" >>"$dirs"
	done
}

# place SOURCE DEST MODE: copies SOURCE (with @BINDIR@ replaced) to DEST.
place() {
	if [ -e "$root$2" ] && ! printf '%s\n' "$previous" | grep -qxF "$2"; then
		echo "install.sh: $root$2 exists and was not installed by this script; left alone" >&2
		exit 1
	fi
	directory "$(dirname "$2")"
	sed "s|@BINDIR@|$prefix/bin|g" "$1" >"$root$2.tmp"
	chmod "$3" "$root$2.tmp"
	mv -f "$root$2.tmp" "$root$2"
	echo "f $2" >>"$files"
	echo "installed $root$2"
}

if [ -x "$here/dist/aoe" ]; then
	if [ -e "$root$prefix/bin/aoe" ] && ! printf '%s\n' "$previous" | grep -qxF "$prefix/bin/aoe"; then
		echo "install.sh: $root$prefix/bin/aoe exists and was not installed by this script; left alone" >&2
		exit 1
	fi
	directory "$prefix/bin"
	cp "$here/dist/aoe" "$root$prefix/bin/aoe.tmp"
	chmod 0755 "$root$prefix/bin/aoe.tmp"
	mv -f "$root$prefix/bin/aoe.tmp" "$root$prefix/bin/aoe"
	echo "f $prefix/bin/aoe" >>"$files"
	echo "installed $root$prefix/bin/aoe"
else
	launcher=$(mktemp)
	printf '#!/bin/sh\n# aoe, run from its checkout %s\nexec "%s/scripts/aoe" "$@"\n' "$here" "$here" >"$launcher"
	place "$launcher" "$prefix/bin/aoe" 0755
	rm -f "$launcher"
fi
for unit in aoe-targets.service aoe-target@.service aoe-initiator.service; do
	place "$here/systemd/$unit" "$unitdir/$unit" 0644
done
for page in "$here"/man/*.[0-9]; do
	section=${page##*.}
	place "$page" "$prefix/share/man/man$section/$(basename "$page")" 0644
done
place "$here/udev/60-aoe-nbd.rules" "/etc/udev/rules.d/60-aoe-nbd.rules" 0644
place "$here/etc/targets.conf.example" "/etc/aoe/targets.conf.example" 0644
place "$here/etc/target-e9.0.env.example" "/etc/aoe/target-e9.0.env.example" 0644
place "$here/etc/aoe.conf.example" "/etc/aoe/modprobe-aoe.conf.example" 0644

directory "$(dirname "$manifest")"
sort -u "$dirs" >"$root$manifest.dirs"
sort -u "$files" >"$root$manifest"
chmod 0644 "$root$manifest" "$root$manifest.dirs"
echo "manifest $root$manifest ($(wc -l <"$root$manifest") files)"
if [ -z "$root" ]; then
	if command -v systemctl >/dev/null 2>&1; then systemctl daemon-reload 2>/dev/null || true; fi
	if command -v udevadm >/dev/null 2>&1; then udevadm control --reload 2>/dev/null || true; fi
fi
