// Package packaging holds the tests of ec2net's install path: the systemd
// unit (systemd/check.sh), the .deb and .rpm built by build.sh (contents,
// lintian, installation into a throwaway root), and a real systemd booted
// with systemd-nspawn that installs, runs, upgrades and removes the .deb
// inside a simulated VPC. The build itself is build.sh and nfpm.yaml.
package packaging
