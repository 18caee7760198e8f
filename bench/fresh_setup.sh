#!/bin/sh
# `make setup` timed on a fresh machine: a new minimal Debian 12 (mmdebstrap minbase plus make,
# what a new machine with a clone of this repository has), with a clone of this checkout in it,
# then `make debs` and `make setup` run inside it as a new user would, against deb.debian.org.
# Run by hand as root (not part of `make bench`: it installs ~360 packages into a throw-away tree).
#
#   sh bench/fresh_setup.sh            # prints: make debs … s; venv … s; make setup total … s
#
# A host whose HTTPS goes through an inspecting proxy has its CA in
# /usr/local/share/ca-certificates; it is copied in first (untimed), or pip cannot reach PyPI.
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /var/tmp/fresh-setup.XXXXXX)
trap 'rm -rf "$work"' EXIT
git clone -q "$here" "$work/src"

# Run by mmdebstrap as a customize hook (its root mode has /dev, /proc and /sys mounted in the
# tree then), with the new tree as $1.
cat > "$work/steps.sh" <<'EOF'
root=$1 work=$2
cp -a "$work/src" "$root/src"
for c in /usr/local/share/ca-certificates/*.crt; do
  [ -e "$c" ] && cp "$c" "$root/usr/local/share/ca-certificates/"
done
chroot "$root" update-ca-certificates >/dev/null 2>&1 || true
now() { date +%s.%N; }
t0=$(now)
chroot "$root" sh -c 'cd /src && make debs' > "$work/make.log" 2>&1; r1=$?
t1=$(now)
chroot "$root" sh -c 'cd /src && make setup' >> "$work/make.log" 2>&1; r2=$?
t2=$(now)
python3 -c "import sys; t0, t1, t2 = map(float, sys.argv[1:4]); \
print('make debs %.1f s (exit %s); venv %.1f s (exit %s); make setup total %.1f s' \
% (t1 - t0, sys.argv[4], t2 - t1, sys.argv[5], t2 - t0))" "$t0" "$t1" "$t2" "$r1" "$r2" > "$work/result"
EOF

mmdebstrap --quiet --mode=root --variant=minbase --include=make,ca-certificates \
  --customize-hook="sh '$work/steps.sh' \"\$1\" '$work'" \
  bookworm "$work/root" http://deb.debian.org/debian || { tail -30 "$work/make.log"; exit 1; }
cat "$work/result"
