/* log.h: logging moved to core/log.h (the bottom layer); this name stays for api/'s includes. */
#include "../core/log.h"
