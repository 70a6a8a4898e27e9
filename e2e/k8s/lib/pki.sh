# Generate the cluster PKI with openssl (sourced by up.sh; needs $PKI).
gen_pki() {
  [[ -f $PKI/.done ]] && return
  rm -rf "$PKI"; mkdir -p "$PKI"; (
  cd "$PKI"
  o() { openssl "$@" 2>/dev/null; }
  o req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=oxbow-local-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
  # leaf CN O [SANs]
  leaf() {
    local name=$1 cn=$2 org=$3 san=${4:-} subj="/CN=$2"
    [[ -n $org ]] && subj="/O=$org/CN=$cn"
    o req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj"
    {
      echo "basicConstraints=CA:FALSE"
      echo "keyUsage=critical,digitalSignature,keyEncipherment"
      if [[ -n $san ]]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$san"
      else echo "extendedKeyUsage=clientAuth"; fi
    } > "$name.ext"
    o x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" -days 3650 -extfile "$name.ext"
    rm -f "$name.csr" "$name.ext"
  }
  # the API server is reached at 127.0.0.1 from the host, at the `kubernetes` Service IP from pods
  # and, with the real node, at the node's bridge address (that Service's endpoint).
  leaf apiserver kube-apiserver "" \
    "IP:127.0.0.1,IP:$KUBERNETES_SERVICE_IP${NODE_IP:+,IP:$NODE_IP},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  leaf admin oxbow-admin system:masters
  leaf controller-manager system:kube-controller-manager ""
  leaf podrunner system:node:oxbow-local system:nodes
  # podrunner acts as an admin as well (it also provisions PVs and creates tokens for pods)
  leaf apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  if [[ $NODE_MODE == real ]]; then  # the real node's components, each with its own identity
    leaf kubelet "system:node:$NODE_NAME" system:nodes
    leaf kube-proxy system:kube-proxy ""
    leaf kube-scheduler system:kube-scheduler ""
    leaf coredns system:coredns ""
  fi
  # service account token signing key pair
  o genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
  o pkey -in sa.key -pubout -out sa.pub
  touch .done )
}

write_kubeconfig() { # file user
  local file=$1 user=$2
  cat > "$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: oxbow-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $user
  user:
    client-certificate: $PKI/$user.crt
    client-key: $PKI/$user.key
contexts:
- name: oxbow-local
  context: {cluster: oxbow-local, user: $user}
current-context: oxbow-local
KC
}
