#pragma once
#include "halsal/high/h.hpp"
