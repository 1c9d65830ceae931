#!/usr/bin/env bash
# Builds an SWUpdate bundle (.swu) that delivers one model to a board running ffnetinfer
# with reload-on-change=true (and verify-digest=true):
#
#   make-model-swu.sh [--key KEY.pem --cert CERT.pem | --unsigned] [--hw-revision REV] \
#     NEW_MODEL.onnx /usr/share/ffnetseg/models/selfie_segmentation.onnx out.swu
#
# The bundle writes the model and its .sha256 under temporary names in the model's folder
# (SWUpdate's "files" handler) and a postinstall script renames them over the old ones,
# digest first: the model path always names a whole file, and the running pipeline swaps
# to it between two frames.
#
# Debian's swupdate accepts only CMS-signed bundles (the board runs `swupdate -k CERT.pem`)
# whose hardware-compatibility lists the board's revision (/etc/hwrevision, or -H):
# --key/--cert sign sw-description with openssl cms; --unsigned is for swupdate builds
# without signing (pkg.swupdate.nosigning); --hw-revision defaults to 1.0.
set -euo pipefail

usage="usage: $0 [--key KEY.pem --cert CERT.pem | --unsigned] [--hw-revision REV] NEW_MODEL.onnx TARGET_PATH OUT.swu"
key="" cert="" unsigned=0 hwrev=1.0
while [ $# -gt 3 ]; do
  case $1 in
    --key) key=$2; shift 2;;
    --cert) cert=$2; shift 2;;
    --unsigned) unsigned=1; shift;;
    --hw-revision) hwrev=$2; shift 2;;
    *) echo "$usage" >&2; exit 2;;
  esac
done
[ $# -eq 3 ] || { echo "$usage" >&2; exit 2; }
if [ $unsigned = 0 ] && { [ -z "$key" ] || [ -z "$cert" ]; }; then
  echo "$0: give --key and --cert to sign the bundle (Debian's swupdate refuses unsigned ones), or --unsigned" >&2
  exit 2
fi
model=$1 target=$2 out=$3
[ -f "$model" ] || { echo "$0: no model file $model" >&2; exit 1; }
case $target in /*) ;; *) echo "$0: TARGET_PATH must be absolute (got $target)" >&2; exit 2;; esac

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
name=$(basename "$target") dir=$(dirname "$target")
cp "$model" "$work/$name"
# The digest file verify-digest reads: sha256sum's format, naming the model's final name.
(cd "$work" && sha256sum "$name" > "$name.sha256")
cat > "$work/activate-model.sh" <<SH
#!/bin/sh
# type "postinstall": SWUpdate runs it once, without arguments, after writing the files
# (as type "shellscript" it would run twice, with "preinst" and "postinst").
case "\${1:-postinst}" in postinst) ;; *) exit 0 ;; esac
set -e
# SWUpdate writes files 0600; the pipeline may run as another user.
chmod 0644 '$dir/.$name.sha256.swu-new' '$dir/.$name.swu-new'
mv -f '$dir/.$name.sha256.swu-new' '$dir/$name.sha256'
mv -f '$dir/.$name.swu-new' '$dir/$name'
SH
chmod 0755 "$work/activate-model.sh"

sha() { sha256sum "$work/$1" | cut -d' ' -f1; }
cat > "$work/sw-description" <<DESC
software =
{
	version = "$(date -u +%Y.%m.%d.%H%M%S)";
	description = "ffnetseg model $name from $(basename "$model")";
	hardware-compatibility: [ "$hwrev" ];
	files: (
		{
			filename = "$name";
			path = "$dir/.$name.swu-new";
			sha256 = "$(sha "$name")";
		},
		{
			filename = "$name.sha256";
			path = "$dir/.$name.sha256.swu-new";
			sha256 = "$(sha "$name.sha256")";
		}
	);
	scripts: (
		{
			filename = "activate-model.sh";
			type = "postinstall";
			sha256 = "$(sha activate-model.sh)";
		}
	);
}
DESC
members="sw-description"
if [ $unsigned = 0 ]; then
  openssl cms -sign -in "$work/sw-description" -out "$work/sw-description.sig" -signer "$cert" \
    -inkey "$key" -outform DER -nosmimecap -binary
  members="$members sw-description.sig"
fi
# sw-description (and its signature) must lead the cpio archive (newc with CRC).
(cd "$work" && printf '%s\n' $members "$name" "$name.sha256" activate-model.sh \
  | cpio --quiet -o -H crc) > "$out"
echo "$out: $(stat -c %s "$out") bytes, installs $target (+ .sha256) on the board"
