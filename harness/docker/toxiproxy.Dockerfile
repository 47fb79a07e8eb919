# Toxiproxy (the real Shopify server binary the project's setup builds) on the local base image.
# BASE_IMAGE: raftchaos/base (the binary is dynamically linked: cgo resolver, needs libc) or
# `scratch` for a static build. Context: this file and the binary named toxiproxy-server.
ARG BASE_IMAGE=scratch
FROM ${BASE_IMAGE}
COPY toxiproxy-server /usr/local/bin/toxiproxy-server
LABEL raftchaos.image=toxiproxy
EXPOSE 8474
# The API listens on all of the container's interfaces: only its private network reaches them,
# ports are never published on the host.
ENTRYPOINT ["/usr/local/bin/toxiproxy-server", "-host", "0.0.0.0", "-port", "8474"]
