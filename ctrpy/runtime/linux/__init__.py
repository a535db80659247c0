"""Facts about the Linux kernel's interfaces, each in one place: how /proc and mount tables read, which
mount options map to which MS_* flags, the capability names. Pure readers and tables: no ctrpy state."""
