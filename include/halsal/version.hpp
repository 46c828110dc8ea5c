// halsal's version.
#pragma once
#define HALSAL_VERSION_MAJOR 0
#define HALSAL_VERSION_MINOR 1
#define HALSAL_VERSION_PATCH 0
#define HALSAL_VERSION_STRING "0.1.0"
