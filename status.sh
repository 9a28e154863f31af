#! /bin/sh
# collate and present sysfs information about AoE storage
#
# The kernel's Documentation/admin-guide/aoe/status.sh, for the tree the
# userspace driver writes: $sysfs_dir, else $AOE_RUNDIR/sys, else /run/aoe/sys.
# Partitions are left out by their own names (the kernel's script drops every
# path containing a "p", which loses everything under /tmp).

set -e
format="%8s\t%8s\t%8s\n"
me=`basename $0`
sysd=${sysfs_dir:-${AOE_RUNDIR:-/run/aoe}/sys}

# A tree behind a symlink (on /dev/shm when the run directory is on disk) is
# read only when the directory it names is no symlink and is the symlink
# owner's: that name is in a directory everybody may write to.
if test -L "$sysd"; then
	t=`readlink "$sysd"`
	case "$t" in /*) ;; *) t=`dirname "$sysd"`/$t ;; esac
	if test -L "$t" || test "`stat -c %u "$t" 2>/dev/null`" != "`stat -c %u "$sysd"`"; then
		echo "$me Error: $sysd names a directory its owner did not make" 1>&2
		exit 1
	fi
fi

if test ! -d "$sysd/block"; then
	echo "$me Error: sysfs is not mounted" 1>&2
	exit 1
fi

for d in "$sysd"/block/etherd*; do
	test -d "$d" || continue
	dev=`echo "$d" | sed 's/.*!//'`
	case "$dev" in *p*) continue ;; esac
	printf "$format" \
		"$dev" \
		"`cat \"$d/netif\"`" \
		"`cat \"$d/state\"`"
done | sort
