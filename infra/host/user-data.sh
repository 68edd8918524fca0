#!/bin/bash
# The netsec runner's first boot (EC2 user data, run once by cloud-init as root), rendered by
# `cargo xtask apply` from infra/host/user-data.sh: {{…}} are filled from infra/<env>.yaml.
# Installs Docker and the GitHub Actions runner service; the service itself is started by
# `cargo xtask deploy` (SSM Run Command), never here. No secret is in this file: user data is
# readable by anyone who may describe the instance. The runner's registration token is read
# from SSM Parameter Store with the instance's own role.
set -euo pipefail

dnf install -y docker
systemctl enable --now docker

# Zero-drop updates: when the old container closes its SO_REUSEPORT listener, connections
# still waiting in its accept queue move to the new container's listener instead of being reset.
echo 'net.ipv4.tcp_migrate_req = 1' > /etc/sysctl.d/90-netsec.conf
sysctl --system >/dev/null

install -d -m 700 /etc/netsec

# The GitHub Actions runner, as its own user (in the docker group: its jobs build and run images).
id runner >/dev/null 2>&1 || useradd --system --create-home --home-dir /opt/actions-runner --groups docker runner
cd /opt/actions-runner
archive="actions-runner-linux-x64-{{RUNNER_VERSION}}.tar.gz"
curl -fsSL -o "$archive" "https://github.com/actions/runner/releases/download/v{{RUNNER_VERSION}}/$archive"
echo "{{RUNNER_SHA256}}  $archive" | sha256sum -c -
tar xzf "$archive"
rm "$archive"
chown -R runner:runner /opt/actions-runner
./bin/installdependencies.sh

token=$(aws ssm get-parameter --region "{{REGION}}" --name "{{TOKEN_PARAMETER}}" --with-decryption \
  --query Parameter.Value --output text 2>/dev/null || true)
if [ -z "$token" ]; then
  echo "netsec: no registration token in {{TOKEN_PARAMETER}} yet: cargo xtask bootstrap stores one and registers the runner" >&2
  exit 0
fi
# The token goes in the environment (the runner reads ACTIONS_RUNNER_INPUT_TOKEN), not in the
# command line that every user on the machine can read.
sudo -u runner env ACTIONS_RUNNER_INPUT_TOKEN="$token" ./config.sh --unattended --replace \
  --url "https://github.com/{{GITHUB_REPOSITORY}}" --name "{{RUNNER_NAME}}" --labels "{{RUNNER_LABELS}}"
./svc.sh install runner
./svc.sh start
