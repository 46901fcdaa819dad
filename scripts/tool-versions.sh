# Pinned tool versions: name, Go package, version. The cache folder of each is keyed by version.
# Temporal CLI v1.5.1: later tags carry a replace directive and cannot be `go install`ed.
# MinIO: the module proxy lists no semver tags for it, so this is a pinned pseudo-version (the
# newest that the proxy serves and that builds with this machine's Go). Its server repository was
# archived in April 2026: the product uses plain S3 APIs only, and the stack's backup store is
# VersityGW. (mc, MinIO's client, is no longer built: nothing used it.)
TEMPORAL_PKG=github.com/temporalio/cli/cmd/temporal
TEMPORAL_VERSION=v1.5.1
MINIO_PKG=github.com/minio/minio
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
# VersityGW: a second, independent S3 server (posix backend) for the embedded stack's backup
# store, so the product is proven on more than one S3 implementation.
VERSITYGW_PKG=github.com/versity/versitygw/cmd/versitygw
VERSITYGW_VERSION=v1.8.0
KOHAKKU_DR_TOOLS="${KOHAKKU_DR_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/kohakku-dr/tools}"
