"""Docker infrastructure: daemon, locally built images, labelled resources and the Docker backend."""
