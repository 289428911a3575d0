# harness/lib/mirror.sh: which Debian mirror the harness downloads from (sourced, never run).
# Needs common.sh (log).
#
# debian_mirrors SUITE sets MIRROR and SECURITY_MIRROR to the addresses this machine's own apt
# uses, as `apt-get indextargets` reports its sources (so that the harness works where Debian is
# reached only through a local mirror or a proxy such as apt-cacher-ng):
#   MIRROR           the main archive: a `deb` source whose Release file says Origin and Label
#                    "Debian" (the one for SUITE first); before the first `apt-get update`, when
#                    no Release file is there yet, a source whose suite is SUITE, SUITE-updates or
#                    another Debian suite name
#   SECURITY_MIRROR  the security archive: Label "Debian-Security" (or, without Release files, a
#                    suite ending in -security); empty when apt has a main archive but no security
#                    one: the harness then builds without the security suite, as this machine's apt
#                    does without it
# CONVERGE_MIRROR and CONVERGE_SECURITY_MIRROR override each; when apt names no Debian archive at
# all, http://deb.debian.org/debian and http://deb.debian.org/debian-security are used.
# shellcheck shell=bash disable=SC2034  # its variables are the sourcing script's to use

# apt_debian_archive SUITE main|security -> the REPO_URI of the best matching apt source (no
# trailing slash), or nothing.
apt_debian_archive() {
  local suite=$1 which=$2
  command -v apt-get >/dev/null || return 0
  # Fields apt cannot fill (no Release file yet) stay as the literal "$(NAME)": treated as empty.
  # shellcheck disable=SC2016
  apt-get indextargets --format '$(TARGET_OF)|$(IDENTIFIER)|$(REPO_URI)|$(RELEASE)|$(ORIGIN)|$(LABEL)' 2>/dev/null |
    awk -F'|' -v suite="$suite" -v which="$which" '
      function known(s) { return s ~ /^(oldoldstable|oldstable|stable|testing|unstable|sid|experimental|buster|bullseye|bookworm|trixie|forky|duke)(-updates)?$/ }
      $1 != "deb" || $2 != "Packages" || $3 ~ /^cdrom:/ { next }
      {
        origin = ($5 ~ /^\$\(/) ? "" : $5; label = ($6 ~ /^\$\(/) ? "" : $6; score = 0
        if (which == "main") {
          if (origin == "Debian" && label == "Debian") score = ($4 == suite) ? 4 : 3
          else if (label == "" && ($4 == suite || $4 == suite "-updates")) score = 2
          else if (label == "" && known($4)) score = 1
        } else {
          if (label == "Debian-Security") score = ($4 == suite "-security") ? 4 : 3
          else if (label == "" && $4 ~ /(-security|\/updates)$/) score = 2
        }
        if (score > best) { best = score; uri = $3 }
      }
      END { sub(/\/+$/, "", uri); if (best > 0) print uri }'
}

debian_mirrors() {   # $1 SUITE; sets MIRROR and SECURITY_MIRROR (see above)
  local suite=$1 main security
  main=$(apt_debian_archive "$suite" main)
  security=$(apt_debian_archive "$suite" security)
  if [ -z "$main" ] && [ -z "$security" ]; then
    main=http://deb.debian.org/debian security=http://deb.debian.org/debian-security
  fi
  MIRROR=${CONVERGE_MIRROR:-${main:-http://deb.debian.org/debian}}
  SECURITY_MIRROR=${CONVERGE_SECURITY_MIRROR:-$security}
}
