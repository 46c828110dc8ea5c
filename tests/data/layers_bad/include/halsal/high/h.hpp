#pragma once
#include "halsal/low/l.hpp"
#include "halsal/nowhere/n.hpp"
