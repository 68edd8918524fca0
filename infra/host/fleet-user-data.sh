#!/bin/bash
# A netsec fleet instance's first boot (EC2 user data of the fleet's launch template, run once
# by cloud-init as root), rendered by `cargo xtask apply` from infra/host/fleet-user-data.sh:
# {{…}} are filled from infra/<env>.yaml, and the whole is sent gzip-compressed (cloud-init
# unpacks it; with the update script inside it is over EC2's 16 KB user-data limit).
#
# Installs Docker and the on-host update script, then starts the image the last deploy wrote
# to {{CURRENT_PARAMETER}}: an instance launched by a scale-out or a replacement serves the
# deployed version, never `latest`. Before the first deploy it starts nothing (the target group
# sees it unhealthy until `cargo xtask deploy` runs). No secret is in this file: user data is
# readable by anyone who may describe the launch template. The fleet serves the bucket's
# current model and has no training route (no admin token is given to it).
set -euo pipefail

dnf install -y docker
systemctl enable --now docker

# Zero-drop updates: see infra/host/user-data.sh.
echo 'net.ipv4.tcp_migrate_req = 1' > /etc/sysctl.d/90-netsec.conf
sysctl --system >/dev/null

install -d -m 700 /opt/netsec /etc/netsec
cat > /opt/netsec/netsec-update.sh <<'NETSEC_UPDATE_SCRIPT'
{{UPDATE_SCRIPT}}
NETSEC_UPDATE_SCRIPT
chmod 700 /opt/netsec/netsec-update.sh
(umask 077 && printf 'NETSEC_TRAIN_STORE=s3://%s/%s\nAWS_REGION=%s\n' \
  "{{BUCKET}}" "{{MODELS_PREFIX}}" "{{REGION}}" > /etc/netsec/service.env)

image=$(aws ssm get-parameter --region "{{REGION}}" --name "{{CURRENT_PARAMETER}}" \
  --query Parameter.Value --output text 2>/dev/null || true)
if [ -z "$image" ] || [ "$image" = None ]; then
  echo "netsec: nothing deployed yet ({{CURRENT_PARAMETER}} has no value): cargo xtask deploy starts the service" >&2
  exit 0
fi
NETSEC_PORT={{PORT}} NETSEC_READY_TIMEOUT={{READY_TIMEOUT}} NETSEC_ENV_FILE=/etc/netsec/service.env \
  NETSEC_ECR_REGION="{{REGION}}" /opt/netsec/netsec-update.sh deploy "$image"
