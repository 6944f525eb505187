package admin

// Exported for the tests of package admin_test, which start a daemon.
var ListenAdminSocket = listenAdminSocket
