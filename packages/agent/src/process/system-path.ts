/**
 * The PATH the agent runs dpkg, apt and dpkg-query with (dpkg refuses to run without ldconfig and
 * start-stop-daemon on it). The system's own directories come first: a program someone put in
 * /usr/local must never be found before the dpkg or apt-get the agent means to run as root.
 */
export const SYSTEM_PATH = '/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/sbin:/usr/local/bin';
