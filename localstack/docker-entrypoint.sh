#!/bin/bash
# Entrypoint of the LocalStack stand-in image (Dockerfile.native): run the boot hooks,
# then LocalStack under its supervisor, which forwards SIGTERM and exits with its code.
set -eo pipefail

# As upstream: LOCALSTACK_<NAME>=value also sets <NAME> (LOCALSTACK_HOST and
# LOCALSTACK_HOSTNAME are settings in their own right, and tokens stay as they are).
for name in $(compgen -e); do
  case $name in
    LOCALSTACK_HOST | LOCALSTACK_HOSTNAME | LOCALSTACK_AUTH_TOKEN | LOCALSTACK_API_KEY) ;;
    LOCALSTACK_[A-Z]*) export "${name#LOCALSTACK_}=${!name}" ;;
  esac
done

mkdir -p /var/lib/localstack/logs

if [ -d /etc/localstack/init/boot.d ]; then
  python -m localstack.runtime.init BOOT
fi

exec localstack-supervisor
